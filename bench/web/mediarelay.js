// The MediaStream relay of bench/relay.py, mode (b): the browser receives the desktop's stream as one video
// track, shows it, and adds that same track to one RTCPeerConnection per viewer, so WebRTC decodes it once and
// encodes it again for every viewer. No signaling server: bench/relay.py calls `window.mediaRelay` through
// Playwright, and every description it hands over is complete (ICE gathering finished), so nothing trickles.
// No STUN or TURN servers: host candidates only.

const video = document.getElementById('screen');
const CONFIG = { iceServers: [] };
let upstream = null;
let track = null;
const viewers = new Map(); // id → RTCPeerConnection
let nextId = 1;

function gathered(pc) {
  return new Promise((resolve) => {
    const check = () => {
      if (pc.iceGatheringState !== 'complete') return;
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    pc.addEventListener('icegatheringstatechange', check);
    check();
  });
}

async function completeOffer(pc) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  return pc.localDescription.sdp;
}

/** The receiver's codecs of one MIME type (`video/h264`, …), with RTX for retransmissions. */
function codecs(mime) {
  return RTCRtpReceiver.getCapabilities('video').codecs.filter((c) => {
    const type = c.mimeType.toLowerCase();
    return type === mime || type === 'video/rtx';
  });
}

/** One report's stats of `type`, each with its codec's MIME type. */
async function statsOf(pc, type) {
  const report = await pc.getStats();
  const out = [];
  report.forEach((s) => {
    if (s.type !== type) return;
    const codec = s.codecId ? report.get(s.codecId) : undefined;
    out.push({ ...s, mimeType: codec ? codec.mimeType : '' });
  });
  return out;
}

window.mediaRelay = {
  /** The offer to receive the desktop's one H.264 track (bench/pertrack.py sends only that). */
  async upstreamOffer() {
    if (upstream !== null) throw new Error('upstreamOffer() called twice');
    upstream = new RTCPeerConnection(CONFIG);
    const transceiver = upstream.addTransceiver('video', { direction: 'recvonly' });
    transceiver.setCodecPreferences(codecs('video/h264'));
    upstream.ontrack = (ev) => {
      track = ev.track;
      video.srcObject = new MediaStream([track]);
    };
    return completeOffer(upstream);
  },

  async upstreamAnswer(sdp) {
    await upstream.setRemoteDescription({ type: 'answer', sdp });
  },

  /** What arrives from the desktop: framesDecoded, frame size and rate (inbound-rtp). */
  async received() {
    if (upstream === null) return null;
    const [inbound] = await statsOf(upstream, 'inbound-rtp');
    return inbound ?? null;
  },

  /**
   * A new viewer: a peer connection that sends the upstream track, and its complete offer. `codec` is `auto`
   * (Chromium's own preference order: the viewer's answer picks its first match) or a MIME subtype to force.
   */
  async addViewer(codec = 'auto') {
    if (track === null) throw new Error('no track from upstream yet');
    const pc = new RTCPeerConnection(CONFIG);
    pc.addTrack(track);
    if (codec !== 'auto') pc.getTransceivers()[0].setCodecPreferences(codecs(`video/${codec.toLowerCase()}`));
    const id = nextId++;
    viewers.set(id, pc);
    return { id, sdp: await completeOffer(pc) };
  },

  async viewerAnswer(id, sdp) {
    await viewers.get(id).setRemoteDescription({ type: 'answer', sdp });
  },

  /** Per viewer, what the sender encodes and sends (outbound-rtp: codec, size, rate, quality limitation). */
  async sent() {
    const out = [];
    for (const [id, pc] of viewers) {
      for (const s of await statsOf(pc, 'outbound-rtp')) out.push({ viewer: id, ...s });
    }
    return out;
  },

  closeViewers() {
    for (const pc of viewers.values()) pc.close();
    viewers.clear();
  },
};
