// The relay page (`/relay#c=…` or `#v=…`, `?max=N`): a viewer of its own upstream (the desktop or another relay)
// that shows the stream and forwards it, unchanged, to up to N viewers of its own (docs/protocol.md §7). What goes
// where is decided in relay.js; this module owns the connections, the page and the test hook. The stream is shown
// as the operator page shows it (surface-view.js): every shared window decodes, one tab each. Once a second it
// reads every connection's statistics, sends upstream its own `stats` with a `downstream` entry per viewer (each
// with the `page` stats that viewer sent), and shows them all in its panel (docs/protocol.md §10).

import { linkKeys, offerMac, parseLinkFragment, verifyAnswerMac } from './keys.js';
import { fillNotice } from './notice.js';
import { PeerSession, gatheringComplete } from './peer.js';
import { controlMessages, parseControl } from './protocol.js';
import {
  KeyframeRequests,
  VideoFanout,
  ViewerBook,
  configsToForward,
  parseCapacity,
  parseDownstream,
  parseShow,
  presenceFor,
} from './relay.js';
import { signalingUrl } from './signaling.js';
import { ConnectionStatsView } from './stats-panel.js';
import {
  PipelineMeter,
  StatsHistory,
  formatBytes,
  formatFigure,
  pairRows,
  pipelineRows,
  selectedPair,
  statsMessage,
  verdictView,
} from './stats.js';
import { SurfaceView } from './surface-view.js';
import { surfaceOverlay, tabLabel } from './surfaces.js';

const $ = (id) => document.getElementById(id);
const canvas = $('screen');
const ui = {
  state: $('state'),
  stream: $('stream'),
  linkRole: $('link-role'),
  overlay: $('overlay'),
  notice: $('notice'),
  tabs: $('tabs'),
  tablist: $('tablist'),
  panel: $('panel'),
  rows: document.querySelector('#connections tbody'),
  stats: $('panel-stats'),
};

/** Like the desktop: an offer that has not led to an open connection by then is given up. */
const OPEN_TIMEOUT_MS = 30_000;
const GATHER_TIMEOUT_MS = 5_000;
const utf8 = new TextEncoder();

const logged = new Set();
function logOnce(key, ...args) {
  if (logged.has(key)) return;
  logged.add(key);
  console.warn('impromptu relay:', ...args);
}

const page = { problem: null, skippedFrames: 0 };
let keys = null;
let capacity = 0;
let showing = true; // ?show=0: relay without decoding
let session = null;
let upstreamOpen = false;
let configsThisConnection = 0;
let capacitySent = false;
const up = { bytesReceived: 0, bytesSent: 0 };
const configs = new Map(); // surface -> the last `config` of the current upstream
const forwarded = new Map(); // surface -> the last `config` sent to viewers, whichever upstream it came from
const states = new Map(); // surface -> its last `surface.state` when not live (§8), for viewers who join later
let lastConfig = null; // the last `config` of any upstream, for the page and the test hook
let presence = null; // the last `presence` of the current upstream
const downstreams = new Map(); // peer id -> Downstream

// The relay's own picture, with a tab per shared window, as the operator page shows it; null with ?show=0 (or
// without WebCodecs).
let view = null;

// Statistics (§10): this page's pipeline figures and the upstream connection's, shown and sent upstream each second.
const meter = new PipelineMeter();
const upStats = { pair: null, pipeline: null, diagnosis: null, diagnosisAt: 0, history: new StatsHistory() };
/** A diagnosis older than this is no longer the desktop's word on the connection. */
const DIAGNOSIS_STALE_MS = 5000;
/** A viewer's `stats` older than this is not passed upstream. */
const PAGE_STALE_MS = 5000;

const requests = new KeyframeRequests({
  send: (surface) => {
    meter.keyframeRequest();
    sendUp(controlMessages.keyframeRequest(surface));
  },
});
const book = new ViewerBook({ log: logOnce });
const fanout = new VideoFanout({
  requestKeyframe: (surface) => requests.request(surface),
  onSkipped: (peer, surface, frames) => {
    const d = downstreams.get(peer);
    if (d !== undefined) sendDown(d, { type: 'stream.skipped', surface, frames });
  },
  onKeyframe: (surface) => requests.keyframeSeen(surface),
  onDrop: (reason) => logOnce(`video:${reason}`, `not forwarding a video fragment from upstream: ${reason}`),
});

// Read-only view for tests and benchmarks.
window.impromptuRelay = Object.freeze({
  get state() {
    return page.problem ?? (session === null ? 'connecting' : session.state);
  },
  get capacity() {
    return capacity;
  },
  /** Frames decoded of the surface shown. */
  get framesDecoded() {
    return view?.selected?.framesDecoded ?? 0;
  },
  get lastConfig() {
    return lastConfig;
  },
  /** Every surface shown here: `{surface, title, width, height, state, framesDecoded, starts}`, by number. */
  get surfaces() {
    return view?.describe() ?? [];
  },
  get selectedSurface() {
    return view?.selected?.surface ?? null;
  },
  /** Show surface `n`, as a click on its tab does; false when there is none. */
  selectSurface: (n) => view !== null && view.select(n),
  get upstream() {
    return Object.freeze({
      peer: session?.peerId ?? null,
      state: session?.connectionState ?? 'closed', // no connection (yet, or any more)
      bytesReceived: up.bytesReceived,
      bytesSent: up.bytesSent,
    });
  },
  get downstream() {
    return [...downstreams.values()].map((d) => Object.freeze(d.snapshot()));
  },
  /**
   * Statistics (§10): `upstream` `{pair, pipeline, verdict, verdictText, reasons, figures, history}` (this relay as
   * a viewer of its upstream) and `downstream`, one `{peer, pair, bytes, frames_forwarded, frames_skipped, page,
   * history}` per viewer (`pair` as this relay sees it, `page` what that viewer sent, or null).
   */
  get stats() {
    const d = currentDiagnosis();
    const v = verdictView(d);
    return structuredClone({
      upstream: {
        pair: upStats.pair,
        pipeline: upStats.pipeline,
        verdict: v.verdict,
        verdictText: v.text,
        reasons: v.reasons,
        figures: d?.figures ?? {},
        history: upStats.history.snapshot(),
      },
      downstream: openDownstreams().map((x) => ({ ...x.statsEntry(), history: x.history.snapshot() })),
    });
  },
  /** Test hook: each frame reaches this page's decoders `ms` late, one at a time. */
  slowDecode: (ms) => view?.slowDecode(ms),
});

// ---- upstream ----

function textBytes(text) {
  return utf8.encode(text).byteLength;
}

function sendUp(message) {
  try {
    if (session === null || !session.send(message)) return false;
  } catch (err) {
    logOnce('up:send', `could not send upstream: ${err?.message ?? err}`);
    return false;
  }
  up.bytesSent += textBytes(JSON.stringify(message));
  return true;
}

function onUpstreamOpen() {
  upstreamOpen = true;
  configsThisConnection = 0;
  meter.reset();
  upStats.diagnosis = null;
  requests.reset(); // nothing was asked of this upstream yet
  view?.disconnect();
  // A new upstream knows nothing of who is behind us.
  book.forgetReport();
  reportViewers();
  render();
}

/** The upstream connection ended: stop serving until a new one is open and receiving. */
function onUpstreamClose() {
  upstreamOpen = false;
  if (capacitySent) session.signal({ type: 'capacity', viewers: 0 });
  capacitySent = false;
  // A later upstream numbers its frames afresh and sends its own configs, which our viewers get again.
  fanout.reset();
  requests.clear();
  configs.clear();
  states.clear();
  presence = null;
  upStats.diagnosis = null;
  view?.disconnect();
  render();
}

/** Tell the server we can serve, once the upstream connection is open and the stream is coming (§7). */
function maybeSendCapacity() {
  if (capacitySent || configs.size === 0 || !session.channelsOpen) return;
  capacitySent = session.signal({ type: 'capacity', viewers: capacity });
}

function onUpstreamControl(text) {
  up.bytesReceived += textBytes(text);
  const parsed = parseControl(text);
  if (!parsed.ok) {
    const detail = parsed.detail ? ` ${parsed.detail}` : '';
    logOnce(`control:${parsed.reason}`, `dropped a control message from upstream: ${parsed.reason}${detail}`);
    return;
  }
  const msg = parsed.msg;
  if (msg.type === 'config') {
    // A chained relay: our upstream relay may have a new upstream, which has not heard our role yet.
    if (configsThisConnection++ > 0) session.sayRole();
    // Another config of a surface on the same connection: a chained relay's upstream changed (a restarted desktop
    // numbers its frames afresh), or the surface was resized — a keyframe follows, and viewers start again from
    // that whatever its number, so the new numbers are not refused as old — or the window was renamed, which
    // changes nothing but the tab. (A new connection resets every surface: onUpstreamClose.)
    const plan = configsToForward(configs.get(msg.surface), forwarded.get(msg.surface), msg);
    if (plan.reset) fanout.resetSurface(msg.surface);
    configs.set(msg.surface, msg);
    forwarded.set(msg.surface, msg);
    lastConfig = Object.freeze(msg);
    view?.configure(msg, { fresh: session.viaRelay });
    for (const d of openDownstreams()) for (const m of plan.send) sendDown(d, m);
    maybeSendCapacity();
  } else if (msg.type === 'presence') {
    presence = msg;
    for (const d of openDownstreams()) sendDown(d, presenceFor(msg, d.peer, book.reported(d.peer)));
  } else if (msg.type === 'stream.skipped') {
    page.skippedFrames += msg.frames;
    for (const d of openDownstreams()) sendDown(d, msg);
  } else if (msg.type === 'surface.state') {
    if (msg.state === 'live') states.delete(msg.surface);
    else states.set(msg.surface, msg);
    view?.setState(msg);
    for (const d of openDownstreams()) sendDown(d, msg);
  } else if (msg.type === 'diagnosis' && msg.peer !== undefined) {
    // About one of our viewers' connections to us: passed on to that viewer alone (§10).
    const d = downstreams.get(msg.peer);
    if (d !== undefined) sendDown(d, { type: 'diagnosis', verdict: msg.verdict, reasons: msg.reasons, figures: msg.figures });
  } else if (msg.type === 'diagnosis') {
    // About this relay's own connection upstream: shown here, not passed on.
    upStats.diagnosis = msg;
    upStats.diagnosisAt = performance.now();
  }
}

function onUpstreamVideo(buffer) {
  up.bytesReceived += buffer.byteLength;
  meter.videoBytes(buffer.byteLength);
  fanout.push(buffer);
  view?.push(buffer);
  maybeSendCapacity();
}

function onSignal(msg) {
  if (msg.type === 'join') onJoin(msg.peer);
  else if (msg.type === 'answer') onAnswer(msg);
  else if (msg.type === 'leave') onLeave(msg.peer);
}

/** Our viewers were assigned to us on the socket that just ended; the server has assigned them elsewhere. */
function onSignalingEnd() {
  for (const d of [...downstreams.values()]) closeDownstream(d, 'this relay’s signaling connection ended');
}

// ---- downstream: our own viewers ----

/** One viewer of this relay: the desktop's side of §2–3, with the relay as the desktop. */
class Downstream {
  constructor(peer) {
    this.peer = peer;
    this.pc = null;
    this.video = null;
    this.control = null;
    this.answered = false;
    this.open = false; // both channels open: it is being served
    this.closed = false;
    this.bytesSent = 0;
    this.bytesReceived = 0;
    // Statistics (§10): the pair as this relay sees it, the viewer's own last `stats`, per-second figures.
    this.pair = null;
    this.page = null;
    this.pageAt = 0;
    this.rates = { bytes: null, frames_forwarded: null, frames_skipped: null };
    this.last = null; // {bytesSent, framesForwarded, framesSkipped, at} at the last second
    this.history = new StatsHistory();
    this.timer = setTimeout(() => closeDownstream(this, 'its connection did not come up in time'), OPEN_TIMEOUT_MS);
  }

  get state() {
    return this.pc === null ? 'new' : this.pc.connectionState;
  }

  snapshot() {
    const stats = fanout.stats(this.peer);
    return {
      peer: this.peer,
      state: this.state,
      open: this.open,
      bytesSent: this.bytesSent,
      bytesReceived: this.bytesReceived,
      framesForwarded: stats?.framesForwarded ?? 0,
      framesSkipped: stats?.framesSkipped ?? 0,
    };
  }

  /** This viewer's `downstream` entry (§10): rates per second; `page` only while its own `stats` keep coming. */
  statsEntry() {
    const fresh = this.page !== null && performance.now() - this.pageAt <= PAGE_STALE_MS;
    return { peer: this.peer, pair: this.pair, ...this.rates, page: fresh ? this.page : null };
  }

  /** Once a second: the rates since the last time, and a sample for the charts. */
  measure(now) {
    const s = this.snapshot();
    if (this.last !== null) {
      const seconds = Math.max(0.001, (now - this.last.at) / 1000);
      const rate = (a, b) => Math.round(((a - b) / seconds) * 10) / 10;
      this.rates = {
        bytes: rate(s.bytesSent, this.last.bytesSent),
        frames_forwarded: rate(s.framesForwarded, this.last.framesForwarded),
        frames_skipped: rate(s.framesSkipped, this.last.framesSkipped),
      };
    }
    this.last = { bytesSent: s.bytesSent, framesForwarded: s.framesForwarded, framesSkipped: s.framesSkipped, at: now };
    const page = this.statsEntry().page;
    this.history.push({
      rtt_ms: this.pair?.rtt_ms ?? null,
      kbps: this.rates.bytes === null ? null : (this.rates.bytes * 8) / 1000,
      fps_decoded: page?.pipeline.fps_decoded ?? null,
      decode_ms: page?.pipeline.decode_ms ?? null,
    });
  }

  /** What VideoFanout sends this viewer's video through. */
  sink() {
    const video = this.video;
    return {
      send: (message) => {
        try {
          video.send(message);
          this.bytesSent += message.byteLength;
        } catch (err) {
          logOnce('down:video-send', `could not send video to a viewer: ${err?.message ?? err}`);
        }
      },
      get bufferedAmount() {
        return video.bufferedAmount;
      },
      watchDrain: (threshold) => {
        video.bufferedAmountLowThreshold = threshold;
      },
    };
  }
}

function openDownstreams() {
  return [...downstreams.values()].filter((d) => d.open);
}

function sendDown(d, message) {
  if (d.control === null || d.control.readyState !== 'open') return;
  const text = JSON.stringify(message);
  try {
    d.control.send(text);
    d.bytesSent += textBytes(text);
  } catch (err) {
    logOnce('down:control-send', `could not send to a viewer: ${err?.message ?? err}`);
  }
}

function onJoin(peer) {
  const old = downstreams.get(peer);
  if (old !== undefined) closeDownstream(old, 'it joined again');
  if (downstreams.size >= capacity) {
    session.signal({ type: 'reject', peer, reason: 'the relay is full' });
    logOnce('join:full', `refused a viewer: all ${capacity} places are taken`);
    return;
  }
  const d = new Downstream(peer);
  downstreams.set(peer, d);
  offer(d).catch((err) => failDownstream(d, err));
  render();
}

async function offer(d) {
  const pc = new RTCPeerConnection({ iceServers: [] });
  d.pc = pc;
  const video = pc.createDataChannel('video', { ordered: false, maxRetransmits: 0 });
  const control = pc.createDataChannel('control');
  d.video = video;
  d.control = control;
  video.binaryType = 'arraybuffer';
  video.onopen = control.onopen = () => onChannelOpen(d);
  video.onclose = control.onclose = () => closeDownstream(d, 'it closed a channel');
  video.onbufferedamountlow = () => fanout.drained(d.peer);
  video.onmessage = () => logOnce('down:video-in', 'ignored a message a viewer sent on the video channel');
  control.onmessage = (ev) => onDownstreamControl(d, ev.data);
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === 'failed' || pc.connectionState === 'closed') {
      closeDownstream(d, `its connection ${pc.connectionState}`);
    }
  };
  await pc.setLocalDescription(await pc.createOffer());
  if (!(await gatheringComplete(pc, GATHER_TIMEOUT_MS))) {
    logOnce('ice:gather-timeout', 'ICE gathering did not complete; offering the candidates found so far');
  }
  if (d.closed) return;
  const sdp = pc.localDescription.sdp;
  const mac = await offerMac(keys.kv, d.peer, sdp);
  if (d.closed) return;
  if (!session.signal({ type: 'offer', peer: d.peer, sdp, mac })) closeDownstream(d, 'signaling is not connected');
}

function onAnswer(answer) {
  const d = downstreams.get(answer.peer);
  if (d === undefined || d.answered || d.pc === null || d.pc.signalingState !== 'have-local-offer') {
    logOnce('answer:unexpected', 'dropped an answer that no offer of ours waits for');
    return;
  }
  d.answered = true;
  accept(d, answer).catch((err) => failDownstream(d, err));
}

async function accept(d, { peer, sdp, mac }) {
  // Viewers MAC answers to a relay under Kv; a control link's Kc is accepted too, when we hold it.
  const verified =
    (await verifyAnswerMac(keys.kv, peer, sdp, mac)) ||
    (keys.kc !== null && (await verifyAnswerMac(keys.kc, peer, sdp, mac)));
  if (d.closed) return;
  if (!verified) {
    logOnce('answer:mac', 'refused a viewer whose answer failed authentication');
    session.signal({ type: 'reject', peer, reason: 'not authorised' });
    closeDownstream(d, 'its answer failed authentication');
    return;
  }
  await d.pc.setRemoteDescription({ type: 'answer', sdp });
}

function onLeave(peer) {
  const d = downstreams.get(peer);
  // An open peer-to-peer connection outlives the viewer's socket, as with the desktop: it ends when it fails.
  if (d !== undefined && !d.open) closeDownstream(d, 'it left before connecting');
}

function onChannelOpen(d) {
  if (d.open || d.closed || d.video.readyState !== 'open' || d.control.readyState !== 'open') return;
  d.open = true;
  clearTimeout(d.timer);
  for (const config of configs.values()) {
    sendDown(d, config);
    const state = states.get(config.surface);
    if (state !== undefined) sendDown(d, state); // after its config, as the desktop sends them
  }
  book.add(d.peer);
  if (presence !== null) sendDown(d, presenceFor(presence, d.peer, book.reported(d.peer)));
  const started = fanout.add(d.peer, d.sink());
  // A viewer that got a kept keyframe needs none of upstream for that surface.
  for (const surface of configs.keys()) if (!started.includes(surface)) requests.request(surface);
  reportViewers();
  render();
}

function onDownstreamControl(d, data) {
  if (!d.open) return; // as the desktop does: nothing counts before both channels are open
  d.bytesReceived += typeof data === 'string' ? textBytes(data) : data.byteLength;
  const parsed = parseDownstream(data);
  if (!parsed.ok) {
    const detail = parsed.detail ? ` ${parsed.detail}` : '';
    logOnce(`down:${parsed.reason}`, `dropped a message from a viewer: ${parsed.reason}${detail}`);
    return;
  }
  const msg = parsed.msg;
  if (msg.type === 'keyframe.request') {
    requests.request(msg.surface);
  } else if (msg.type === 'relayed') {
    // Only the envelope's known fields go upstream, freshly serialized: nothing else a viewer put in travels on.
    if (!book.mayRelay(d.peer, msg.from)) {
      logOnce('down:relayed.from', 'dropped an envelope from a peer that viewer does not serve');
    } else {
      sendUp(msg);
    }
  } else if (msg.type === 'relay.viewers') {
    book.setReported(d.peer, msg.peers);
    reportViewers();
  } else if (msg.type === 'stats') {
    d.page = msg.page;
    d.pageAt = performance.now();
  }
}

/** Tell upstream who is served through us, when that changed (§7). */
function reportViewers() {
  if (!upstreamOpen) return;
  const report = book.takeReport();
  if (report !== null && !sendUp(report)) book.forgetReport();
}

function failDownstream(d, err) {
  logOnce(`down:error:${err?.name}`, `a viewer's connection could not be set up: ${err?.message ?? err}`);
  closeDownstream(d, 'its connection could not be set up');
}

function closeDownstream(d, reason) {
  if (d.closed) return;
  d.closed = true;
  clearTimeout(d.timer);
  if (downstreams.get(d.peer) === d) {
    downstreams.delete(d.peer);
    fanout.remove(d.peer);
    book.remove(d.peer);
  }
  for (const ch of [d.video, d.control]) {
    if (ch === null) continue;
    ch.onopen = ch.onclose = ch.onmessage = ch.onbufferedamountlow = null;
    try {
      ch.close();
    } catch {
      // already closed
    }
  }
  if (d.pc !== null) {
    d.pc.onconnectionstatechange = null;
    d.pc.close();
  }
  console.info(`impromptu relay: viewer ${d.peer} gone: ${reason}`);
  if (d.open) reportViewers();
  render();
}

// ---- statistics (§10) ----

/** The desktop's last diagnosis of this relay's upstream connection, unless it is stale. */
function currentDiagnosis() {
  if (upStats.diagnosis === null || performance.now() - upStats.diagnosisAt > DIAGNOSIS_STALE_MS) return null;
  return upStats.diagnosis;
}

async function pairOf(pc) {
  if (pc === null) return null;
  try {
    return selectedPair(await pc.getStats());
  } catch (err) {
    logOnce('stats:getStats', `could not read a connection's statistics: ${err?.message ?? err}`);
    return null;
  }
}

let collecting = false;

/**
 * Once a second: every connection's pair, this page's pipeline, each viewer's rates; `stats` upstream with a
 * `downstream` entry per viewer; then the panel.
 */
async function collectStats() {
  if (collecting || session === null) return;
  collecting = true;
  try {
    const connected = session.state === 'connected';
    const open = openDownstreams();
    let upReport = null;
    if (connected) {
      try {
        upReport = await session.getStats();
      } catch (err) {
        logOnce('stats:getStats', `could not read the upstream connection's statistics: ${err?.message ?? err}`);
      }
    }
    const pairs = await Promise.all(open.map((d) => pairOf(d.pc)));
    const now = performance.now();
    open.forEach((d, i) => {
      d.pair = pairs[i];
      d.measure(now);
    });
    upStats.pair = upReport === null ? null : selectedPair(upReport);
    const pipeline = meter.take(view?.queueSize() ?? null);
    if (view === null) {
      // Nothing is decoded here (?show=0, or no WebCodecs): no frame figures, only bytes and keyframe requests.
      for (const k of ['fps_received', 'fps_decoded', 'fps_dropped', 'decode_ms', 'jitter_ms', 'queue']) {
        pipeline[k] = null;
      }
    }
    upStats.pipeline = pipeline;
    upStats.history.push({ ...pipeline, rtt_ms: upStats.pair?.rtt_ms ?? null });
    if (connected) {
      sendUp(statsMessage({ pair: upStats.pair, pipeline, downstream: open.map((d) => d.statsEntry()) }));
    }
    renderStats();
  } finally {
    collecting = false;
  }
}

const statsViews = new Map(); // 'up' or a viewer's peer id -> ConnectionStatsView

function statsView(key, title, options) {
  let v = statsViews.get(key);
  if (v === undefined) {
    const root = document.createElement('section');
    root.dataset.connection = key;
    v = new ConnectionStatsView(root, { title, ...options });
    statsViews.set(key, v);
  }
  v.title = title;
  return v;
}

function renderStats() {
  if (ui.stats === null || page.problem !== null) return;
  const d = currentDiagnosis();
  const upView = statsView('up', `Upstream: ${session.viaRelay ? 'a relay' : 'the desktop'}`);
  const figures = Object.entries(d?.figures ?? {}).map(([k, v]) => [k, v === null ? '—' : String(v)]);
  const groups = [
    { title: 'Network path', rows: pairRows(upStats.pair) },
    { title: 'This page', rows: pipelineRows(upStats.pipeline) },
  ];
  if (figures.length > 0) groups.push({ title: 'The desktop’s view of it', rows: figures, collapsed: true });
  const updates = [[upView, { verdict: verdictView(d), history: upStats.history.snapshot(), groups }]];
  for (const x of openDownstreams()) {
    const entry = x.statsEntry();
    const v = statsView(x.peer, `Viewer ${x.peer.slice(0, 8)}`, { verdict: false });
    const forwarding = [
      ['Sent', entry.bytes === null ? '—' : `${formatBytes(entry.bytes)}/s`],
      ['Frames forwarded', formatFigure(entry.frames_forwarded, '/s')],
      ['Frames skipped', formatFigure(entry.frames_skipped, '/s')],
    ];
    const viewerGroups = [
      { title: 'Network path (this relay’s view)', rows: pairRows(entry.pair) },
      { title: 'Forwarding', rows: forwarding },
    ];
    if (entry.page === null) {
      viewerGroups.push({ title: 'The viewer’s page', rows: [['Its stats', 'none received']] });
    } else {
      viewerGroups.push({ title: 'The viewer’s page', rows: pipelineRows(entry.page.pipeline) });
      viewerGroups.push({ title: 'Network path (the viewer’s view)', rows: pairRows(entry.page.pair) });
    }
    updates.push([v, { history: x.history.snapshot(), groups: viewerGroups }]);
  }
  const keep = updates.map(([v]) => v.root);
  const kept = new Set(keep.map((root) => root.dataset.connection));
  for (const key of [...statsViews.keys()]) if (!kept.has(key)) statsViews.delete(key);
  // Moved only when the order changed, so that nothing (a selection, the scroll) is disturbed every second.
  const now = [...ui.stats.children];
  if (now.length !== keep.length || now.some((n, i) => n !== keep[i])) ui.stats.replaceChildren(...keep);
  for (const [v, args] of updates) v.update(args); // once in the page: charts are drawn to their size
}

// ---- page ----

const UPSTREAM_TEXT = {
  connecting: 'connecting to upstream…',
  waiting: 'waiting for the desktop…',
  connected: 'upstream connected',
  reconnecting: 'reconnecting to upstream',
  failed: 'upstream failed',
};

function render() {
  if (page.problem !== null || session === null) return;
  const { state, reason } = session;
  document.body.dataset.state = state;
  let upstream = UPSTREAM_TEXT[state];
  if (state === 'connected' && session.viaRelay) upstream += ' (through another relay)';
  if (state === 'waiting' && reason) upstream = `waiting — ${reason}`;
  else if (reason) upstream += ` — ${reason}`;
  ui.state.textContent = `Relaying to ${openDownstreams().length} of ${capacity} · ${upstream}`;
  ui.state.title = reason;
  const selected = view?.selected ?? null;
  const shownConfig = selected?.config ?? lastConfig;
  ui.stream.textContent = shownConfig ? `${shownConfig.width}×${shownConfig.height} ${shownConfig.codec}` : '';
  // No picture, or no upstream: say why. A window that is paused or closed: say so over its last picture.
  const waiting = !(selected !== null && selected.framesDecoded > 0) || state !== 'connected';
  const over = waiting ? null : surfaceOverlay(selected);
  ui.overlay.hidden = !waiting && over === null;
  ui.overlay.classList.toggle('dim', over !== null);
  if (waiting) {
    ui.overlay.textContent = upstream;
    if (view === null) {
      ui.overlay.textContent = showing
        ? 'This browser cannot show the stream (no WebCodecs), but it relays it'
        : 'Relaying only: this page does not show the stream (?show=0)';
    }
  } else ui.overlay.textContent = over?.text ?? '';
  const what = selected !== null && selected.surface !== 0 ? `shared window: ${tabLabel(selected)}` : 'shared desktop';
  canvas.setAttribute('aria-label', `${what}, as this relay receives it`);
  renderConnections();
}

function cell(text, className = '', title = '') {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  if (title) td.title = title;
  return td;
}

function framesDecodedHere() {
  return (view?.surfaces.list ?? []).reduce((sum, s) => sum + s.framesDecoded, 0);
}

function renderConnections() {
  const rows = [];
  const upRow = document.createElement('tr');
  upRow.className = 'up';
  const upState = session.connectionState ?? session.state; // no connection: say what the session is doing
  upRow.append(
    cell(session.viaRelay ? 'relay' : 'desktop', 'peer', `this relay is ${session.peerId ?? '(no id yet)'} to it`),
    cell('up'),
    cell(upState, `state-${upState}`),
    cell(formatBytes(up.bytesReceived), 'num'),
    cell(formatBytes(up.bytesSent), 'num'),
    cell(String(framesDecodedHere()), 'num', 'frames decoded here (every window)'),
    cell(String(page.skippedFrames), 'num', 'frames upstream skipped for this relay'),
  );
  rows.push(upRow);
  for (const d of downstreams.values()) {
    const s = d.snapshot();
    const tr = document.createElement('tr');
    tr.append(
      cell(s.peer.slice(0, 8), 'peer', s.peer),
      cell('down'),
      cell(s.state, `state-${s.state}`),
      cell(formatBytes(s.bytesReceived), 'num'),
      cell(formatBytes(s.bytesSent), 'num'),
      cell(String(s.framesForwarded), 'num'),
      cell(String(s.framesSkipped), 'num'),
    );
    rows.push(tr);
  }
  if (downstreams.size === 0) {
    const tr = document.createElement('tr');
    const td = cell(capacity === 0 ? 'This relay serves nobody (?max=0)' : 'No viewers yet', 'empty');
    td.colSpan = 7;
    tr.append(td);
    rows.push(tr);
  }
  ui.rows.replaceChildren(...rows);
}

/** A full-page message instead of the stream: the relay cannot work at all. */
function showNotice(state, title, lines) {
  page.problem = state;
  document.body.dataset.state = state;
  ui.state.textContent = `Relay stopped: ${title}`;
  ui.overlay.hidden = true;
  fillNotice(ui.notice, title, lines);
  canvas.hidden = true;
  ui.panel.hidden = true;
  document.body.classList.add('stopped');
}

function unsupportedReasons() {
  const lines = [];
  if (!window.isSecureContext || !globalThis.crypto?.subtle) {
    lines.push('This page is not a secure context: open it over https, or on localhost / 127.0.0.1.');
  }
  if (typeof window.RTCPeerConnection !== 'function') lines.push('This browser has no WebRTC (RTCPeerConnection).');
  return lines;
}

async function main() {
  window.addEventListener('hashchange', () => location.reload());
  window.addEventListener('pageshow', (e) => e.persisted && location.reload());
  const problems = unsupportedReasons();
  if (problems.length > 0) {
    showNotice('unsupported', 'This browser cannot relay the desktop', problems);
    return;
  }
  const max = parseCapacity(location.search);
  if (!max.ok) {
    showNotice('failed', max.reason, ['For example /relay?max=4#c=… serves up to four viewers.']);
    return;
  }
  capacity = max.capacity;
  const show = parseShow(location.search);
  if (!show.ok) {
    showNotice('failed', show.reason, ['/relay?show=0#… relays without showing the stream (it costs less CPU).']);
    return;
  }
  showing = show.show;
  const link = parseLinkFragment(location.hash);
  if (!link.ok) {
    showNotice('failed', link.reason, ['Open /relay with a link the desktop printed: everything after the # too.']);
    return;
  }
  try {
    keys = await linkKeys(link);
  } catch (err) {
    showNotice('failed', err.message, ['Copy the whole link the desktop printed and open it again.']);
    return;
  }
  ui.linkRole.textContent = keys.role === 'control' ? 'relay · control link' : 'relay · view-only link';

  if (showing && typeof window.VideoDecoder === 'function') {
    view = new SurfaceView({
      meter,
      canvas,
      strip: ui.tabs,
      tablist: ui.tablist,
      requestKeyframe: (surface) => requests.request(surface),
      log: (key, ...args) => logOnce(`own-${key}`, ...args),
      onChange: render,
      onFrame: (surface, { first }) => first && render(),
      onDecoderError: (surface, err, fatal) => {
        const what = fatal ? 'this browser cannot decode the stream' : 'decoder error, waiting for a keyframe';
        logOnce(`decoder:${err?.name}`, `${what}: ${err?.message ?? err}`);
      },
    });
    view.attach();
  }

  session = new PeerSession({
    url: signalingUrl(location),
    keys,
    role: 'relay',
    onState: render,
    onOpen: onUpstreamOpen,
    onClose: onUpstreamClose,
    onControl: onUpstreamControl,
    onVideo: onUpstreamVideo,
    onSignal,
    onSignalingEnd,
    log: (key, ...args) => logOnce(key, ...args),
  });
  window.addEventListener('pagehide', () => session.stop());
  session.start();
  setInterval(() => view?.tick(), 100);
  setInterval(render, 1000);
  setInterval(collectStats, 1000);
  render();
}

main().catch((err) => {
  console.warn('impromptu relay: could not start', err);
  showNotice('failed', `The relay could not start: ${err?.message ?? err}`, []);
});
