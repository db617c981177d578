// One viewer's connection to the desktop (docs/protocol.md §2–3): a signaling socket, the offer's MAC checked
// before answering, a non-trickle answer MACed under our key, the `video` and `control` DataChannels, and
// reconnection with backoff whenever any of it goes away. Behind a relay (§7), messages that need a role travel
// in sealed `relayed` envelopes, which a relay can neither read nor make.

import { MAX_SEALED_MESSAGE, answerMac, sealInput, verifyOfferMac } from './keys.js';
import { controlMessages, needsRole } from './protocol.js';
import { SignalingClient } from './signaling.js';

const utf8 = new TextEncoder();

export const BACKOFF = { initialMs: 500, maxMs: 10_000, factor: 2, jitter: 0.2 };

/** Delay before reconnection attempt number `failures` (0-based): exponential, capped, with ±20 % jitter. */
export function backoffDelay(failures, { initialMs, maxMs, factor, jitter } = BACKOFF, random = Math.random) {
  const base = Math.min(maxMs, initialMs * factor ** Math.max(0, failures));
  return Math.round(base * (1 + jitter * (2 * random() - 1)));
}

/** Resolve once `pc` finished gathering ICE candidates (or after `timeoutMs`, with what it has). */
export function gatheringComplete(pc, timeoutMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (complete) => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve(complete);
    };
    const check = () => {
      if (pc.iceGatheringState === 'complete') done(true);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

export const FULL_REASON = 'every place is taken; you will be let in when one frees up';

/**
 * Keeps one viewer connected to the desktop of `keys.room` (directly or through a relay), for as long as it is
 * not stopped.
 *
 * Callbacks: `onState(state, reason)` with state in 'connecting' | 'waiting' | 'connected' | 'reconnecting' |
 * 'failed'; `onOpen()` when the control channel opens (a fresh connection: reset stream state);
 * `onClose()` when that connection ends; `onControl(text)`; `onVideo(arrayBuffer)`; `log(key, ...args)` to
 * report a dropped message once per key. A relay page says `role: 'relay'` in its hello and gets the signaling
 * messages meant for its own viewers (`join`, `answer`, `leave`) through `onSignal(msg)`, and
 * `onSignalingEnd()` when the socket they came on is gone (its viewers are then assigned elsewhere).
 */
export class PeerSession {
  constructor({
    url,
    keys,
    role = 'viewer',
    onState = () => {},
    onOpen = () => {},
    onClose = () => {},
    onControl = () => {},
    onVideo = () => {},
    onSignal = () => {},
    onSignalingEnd = () => {},
    log = () => {},
    RTCPeerConnectionImpl = globalThis.RTCPeerConnection,
    WebSocketImpl = globalThis.WebSocket,
    gatherTimeoutMs = 5_000,
    handshakeTimeoutMs = 15_000,
    disconnectGraceMs = 5_000,
    relayGraceMs = 5_000,
    stableMs = 10_000,
  }) {
    this._url = url;
    this._keys = keys;
    this._role = role;
    this._cb = { onState, onOpen, onClose, onControl, onVideo, onSignal, onSignalingEnd, log };
    this._RTCPeerConnection = RTCPeerConnectionImpl;
    this._WebSocket = WebSocketImpl;
    this._gatherTimeoutMs = gatherTimeoutMs;
    this._handshakeTimeoutMs = handshakeTimeoutMs;
    this._disconnectGraceMs = disconnectGraceMs;
    this._relayGraceMs = relayGraceMs;
    this._stableMs = stableMs;

    this.state = 'connecting';
    this.reason = '';
    this._started = false;
    this._stopped = false;
    this._attempt = null; // token of the current attempt; callbacks of older attempts are ignored
    this._sig = null;
    this._pc = null;
    this._control = null;
    this._video = null;
    this._open = false;
    this._peerId = null;
    this._viaRelay = false; // the current connection's offer came from a relay
    // Envelope numbering is per `from` (our peer id), not per connection: the desktop refuses a seq that does
    // not grow for a sender, and a page moved to another relay keeps its socket, hence its peer id.
    this._relayedSeq = 0;
    this._relayedChain = Promise.resolve(); // envelopes leave in the order they were numbered
    this._failures = 0;
    this._connectedAt = 0; // when the current connection opened; 0 when not connected
    this._everConnected = false;
    this._lastFailure = '';
    this._watchdog = null;
    this._disconnectTimer = null;
    this._retryTimer = null;
  }

  start() {
    if (this._started) throw new Error('PeerSession.start() called twice');
    this._started = true;
    this._connect();
  }

  /** Close everything for good; idempotent. */
  stop() {
    if (this._stopped) return;
    this._stopped = true;
    clearTimeout(this._retryTimer);
    this._teardown();
  }

  /** This socket's peer id (from `welcome`), or null before it. */
  get peerId() {
    return this._peerId;
  }

  /** Whether the current connection is to a relay rather than to the desktop. */
  get viaRelay() {
    return this._viaRelay;
  }

  /** The current peer connection's `connectionState`, or null when there is none. */
  get connectionState() {
    return this._pc?.connectionState ?? null;
  }

  /** The current peer connection's `getStats()` report (§10), or null when there is no connection. */
  async getStats() {
    const pc = this._pc;
    return pc === null ? null : pc.getStats();
  }

  /** Whether both DataChannels of the current connection are open. */
  get channelsOpen() {
    return this._control?.readyState === 'open' && this._video?.readyState === 'open';
  }

  /**
   * Send one control message (an object); false when the control channel is not open. Behind a relay, a message
   * that needs a role goes in a `relayed` envelope — which only a control link can make.
   */
  send(message) {
    const ch = this._control;
    if (ch === null || ch.readyState !== 'open') return false;
    if (this._viaRelay && needsRole(message.type)) return this._sendRelayed(ch, message);
    ch.send(JSON.stringify(message));
    return true;
  }

  /**
   * A new DataChannel of the page's own on the current connection to the desktop (§9: one `file` channel per
   * transfer), or null when there is none — not connected, or connected through a relay, which carries no such
   * channels. The connection's end closes it (without a `close` event in some browsers: watch `onClose`).
   */
  openChannel(label, options) {
    if (!this._open || this._viaRelay || this._pc === null) return null;
    return this._pc.createDataChannel(label, options);
  }

  /**
   * End the current connection as if it had been lost, and reconnect as then (for tests of what survives a
   * drop, such as a file transfer's resume); false when there is no connection to drop.
   */
  drop(reason = 'the connection was dropped on purpose') {
    if (this._attempt === null || !this._open) return false;
    this._lost(this._attempt, reason);
    return true;
  }

  /** Send one signaling message (a relay's `capacity`, `offer`, `reject`); false when the socket is not open. */
  signal(message) {
    return this._sig !== null && this._sig.send(message);
  }

  /**
   * Behind a relay, with a control link: tell the desktop our role (`control.hello`), which it learns only from a
   * verified envelope. Sent when the channels open, and again whenever the relay may have a new upstream (a
   * `config` after the first), which knows nothing of us yet.
   */
  sayRole() {
    if (this._viaRelay && this._keys.kc) this.send(controlMessages.controlHello());
  }

  _sendRelayed(ch, message) {
    const { kc } = this._keys;
    if (!kc) {
      this._cb.log(`relayed:${message.type}`, `not sending ${message.type}: a view-only link cannot control`);
      return false;
    }
    const text = JSON.stringify(message);
    if (utf8.encode(text).byteLength > MAX_SEALED_MESSAGE) {
      // The desktop would refuse it (and nothing a page sends is this long): not worth a sequence number.
      this._cb.log('relayed:too-long', `not sending a ${message.type.slice(0, 40)} of over ${MAX_SEALED_MESSAGE} bytes`);
      return false;
    }
    const from = this._peerId;
    this._relayedSeq += 1;
    const seq = this._relayedSeq;
    // WebCrypto seals asynchronously and may finish out of order: sealing starts at once, sends are chained.
    const sealed = sealInput(kc, from, seq, text);
    this._relayedChain = this._relayedChain
      .then(() => sealed)
      .then(({ iv, box }) => {
        if (ch === this._control && ch.readyState === 'open') {
          ch.send(JSON.stringify({ type: 'relayed', from, seq, iv, box }));
        }
      })
      .catch((err) => this._cb.log('relayed:seal', `could not send a relayed message: ${err?.message ?? err}`));
    return true;
  }

  _setState(state, reason = '') {
    if (state === this.state && reason === this.reason) return;
    this.state = state;
    this.reason = reason;
    this._cb.onState(state, reason);
  }

  _connect() {
    if (this._stopped) return;
    const token = {};
    this._attempt = token;
    this._peerId = null;
    this._setState(this._phase(), this._lastFailure);
    this._sig = new SignalingClient(this._url, this._keys.room, {
      role: this._role,
      WebSocketImpl: this._WebSocket,
      onMessage: (msg) => this._onSignal(token, msg),
      onClose: (reason) => this._signalingLost(token, reason),
      onDrop: (reason, detail) =>
        this._cb.log(`signal:${reason}`, `dropped a signaling message: ${reason}${detail ? ` ${detail}` : ''}`),
    });
    this._sig.open();
    this._arm(token, 'the desktop did not send an offer in time');
  }

  _onSignal(token, msg) {
    if (token !== this._attempt) return;
    switch (msg.type) {
      case 'welcome':
        if (msg.peer !== this._peerId) this._relayedSeq = 0;
        this._peerId = msg.peer;
        break;
      case 'waiting':
        // The server has no upstream for us (yet, or any longer: the relay we were connected to went away, and
        // every place is taken). Whatever connection is left is ending; we are offered a new one when there is.
        this._closePeer();
        this._disarm();
        this._setState('waiting', msg.reason === 'full' ? FULL_REASON : '');
        break;
      case 'desktop-gone':
        if (this._open) {
          // The desktop's own signaling socket went (it comes back by itself, §11): our connection needs none,
          // and stays. Our socket is of no more use, and an offer on it would only replace a working connection.
          this._sig.close();
          this._cb.log('signal:desktop-gone', 'the desktop left signaling; the open connection goes on without it');
          break;
        }
        this._closePeer();
        this._disarm();
        this._setState('waiting', 'the desktop left; waiting for it to come back');
        break;
      case 'offer':
        if (this._peerId === null || msg.peer !== this._peerId) {
          this._cb.log('signal:offer.peer', 'dropped an offer for another peer id');
          return;
        }
        this._answer(token, msg).catch((err) => {
          this._retry(token, `could not set up the peer connection: ${err?.message ?? err}`);
        });
        break;
      case 'reject':
        // From the desktop or, since §7, from a relay (before any offer, when it is full): say only what it said.
        this._retry(token, `this viewer was not let in: ${msg.reason || 'no reason given'}`, 'failed');
        break;
      default:
        this._cb.onSignal(msg);
    }
  }

  async _answer(token, offer) {
    const { kv, kc, role } = this._keys;
    const peer = this._peerId;
    if (!(await verifyOfferMac(kv, peer, offer.sdp, offer.mac))) {
      if (token !== this._attempt) return;
      // Wrong link or tampered signaling: never answer. The watchdog retries later, in case it was a fluke.
      this._cb.log('signal:offer.mac', 'dropped an offer whose MAC does not verify');
      // A connection that works stays, and so does what the page shows of it: only a page with none has failed.
      if (!this._open) {
        this._setState('failed', 'the desktop’s offer failed authentication (wrong link, or signaling was tampered with)');
      }
      return;
    }
    if (token !== this._attempt) return;
    this._closePeer(); // a fresh offer replaces any previous connection
    this._setState(this._phase(), this._lastFailure);
    this._arm(token, 'the peer connection did not come up in time');
    const pc = new this._RTCPeerConnection({ iceServers: [] });
    this._pc = pc;
    this._viaRelay = offer.relay === true;
    pc.ondatachannel = (ev) => this._onChannel(token, pc, ev.channel);
    pc.onconnectionstatechange = () => this._onPcState(token, pc);
    await pc.setRemoteDescription({ type: 'offer', sdp: offer.sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    if (!(await gatheringComplete(pc, this._gatherTimeoutMs))) {
      this._cb.log('ice:gather-timeout', 'ICE gathering did not complete; answering with the candidates found so far');
    }
    if (token !== this._attempt || pc !== this._pc) return;
    const sdp = pc.localDescription.sdp;
    // A relay may hold only Kv, so an answer to a relay is MACed under Kv whatever our link (§7).
    const mac = await answerMac(role === 'control' && !this._viaRelay ? kc : kv, peer, sdp);
    if (token !== this._attempt || pc !== this._pc) return;
    this._sig.sendAnswer(sdp, mac);
  }

  _onChannel(token, pc, channel) {
    if (token !== this._attempt || pc !== this._pc) {
      channel.close();
      return;
    }
    if (channel.label === 'video') {
      this._video = channel;
      channel.binaryType = 'arraybuffer';
      channel.onmessage = (ev) => {
        if (ev.data instanceof ArrayBuffer) this._cb.onVideo(ev.data);
        else this._cb.log('video:text', 'dropped a text message on the video channel');
      };
      channel.onclose = () => this._lost(token, `${this._upstreamName()} closed the video channel`);
    } else if (channel.label === 'control') {
      this._control = channel;
      channel.onmessage = (ev) => {
        if (typeof ev.data === 'string') this._cb.onControl(ev.data);
        else this._cb.log('control:binary', 'dropped a binary message on the control channel');
      };
      channel.onopen = () => this._onControlOpen(token);
      channel.onclose = () => this._lost(token, `${this._upstreamName()} closed the connection`);
      if (channel.readyState === 'open') this._onControlOpen(token);
    } else {
      this._cb.log('channel:unknown', `ignored an unknown DataChannel ${JSON.stringify(channel.label.slice(0, 40))}`);
    }
  }

  _onControlOpen(token) {
    if (token !== this._attempt || this._open) return;
    this._open = true;
    this._disarm();
    this._connectedAt = Date.now();
    this._everConnected = true;
    this._lastFailure = '';
    this._setState('connected', '');
    this.sayRole(); // before any input
    this._cb.onOpen();
  }

  _onPcState(token, pc) {
    if (token !== this._attempt || pc !== this._pc) return;
    switch (pc.connectionState) {
      case 'connected':
        clearTimeout(this._disconnectTimer);
        this._disconnectTimer = null;
        break;
      case 'disconnected':
        if (this._disconnectTimer === null) {
          this._disconnectTimer = setTimeout(
            () => this._lost(token, `the connection to ${this._upstreamName()} was lost`),
            this._disconnectGraceMs,
          );
        }
        break;
      case 'failed':
        this._lost(token, 'the peer connection failed');
        break;
      case 'closed':
        this._lost(token, 'the peer connection closed');
        break;
    }
  }

  _upstreamName() {
    return this._viaRelay ? 'the relay' : 'the desktop';
  }

  /**
   * The peer connection ended. A connection to the desktop starts over with a new socket (§3). Behind a relay,
   * the socket stays: when a relay goes away the server places its viewers again at once and sends a fresh offer
   * on their open sockets (§7), so a relay keeps its own viewers and a viewer its peer id. Only if no offer comes
   * within `relayGraceMs` (the relay's link failed while its socket lives on) does it start over.
   */
  _lost(token, reason) {
    if (token !== this._attempt || this._stopped) return;
    if (!this._viaRelay || this._sig?.closed) {
      this._retry(token, reason);
      return;
    }
    this._closePeer();
    this._lastFailure = reason;
    this._setState('reconnecting', `${reason}; waiting to be placed again`);
    this._arm(token, `${reason} and no new offer came`, this._relayGraceMs);
  }

  /**
   * The signaling socket closed: the server restarted, say (§11). An open connection needs no signaling, so it
   * stays — and a relay keeps serving its viewers — until it ends; only then does a new attempt open a new
   * socket. Without an open connection, that is now.
   */
  _signalingLost(token, reason) {
    if (token !== this._attempt || this._stopped) return;
    if (!this._open) {
      this._retry(token, reason);
      return;
    }
    this._cb.log('signal:lost', `${reason}; the open connection goes on without it`);
  }

  /** End the current attempt and schedule the next one. */
  _retry(token, reason, state = 'reconnecting') {
    if (token !== this._attempt || this._stopped) return;
    // A connection that stayed up a while resets the backoff; one that flaps keeps growing it.
    if (this._connectedAt !== 0 && Date.now() - this._connectedAt > this._stableMs) this._failures = 0;
    this._connectedAt = 0;
    this._lastFailure = reason;
    this._teardown();
    const delay = backoffDelay(this._failures);
    this._failures += 1;
    this._setState(state, `${reason}; retrying in ${Math.max(1, Math.round(delay / 1000))} s`);
    this._retryTimer = setTimeout(() => this._connect(), delay);
  }

  _phase() {
    return this._everConnected || this._failures > 0 ? 'reconnecting' : 'connecting';
  }

  _arm(token, reason, ms = this._handshakeTimeoutMs) {
    this._disarm();
    this._watchdog = setTimeout(() => this._retry(token, reason), ms);
  }

  _disarm() {
    clearTimeout(this._watchdog);
    this._watchdog = null;
  }

  _closePeer() {
    clearTimeout(this._disconnectTimer);
    this._disconnectTimer = null;
    const wasOpen = this._open;
    this._open = false;
    this._viaRelay = false;
    for (const ch of [this._control, this._video]) {
      if (ch === null) continue;
      ch.onopen = ch.onmessage = ch.onclose = null;
      try {
        ch.close();
      } catch {
        // already closed
      }
    }
    this._control = this._video = null;
    if (this._pc !== null) {
      const pc = this._pc;
      this._pc = null;
      pc.ondatachannel = pc.onconnectionstatechange = null;
      pc.close();
    }
    if (wasOpen) this._cb.onClose();
  }

  _teardown() {
    this._attempt = null;
    this._disarm();
    this._closePeer();
    if (this._sig !== null) {
      this._sig.close();
      this._sig = null;
      this._cb.onSignalingEnd();
    }
  }
}
