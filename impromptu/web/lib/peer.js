// One viewer's connection to the desktop (docs/protocol.md §2–3): a signaling socket, the offer's MAC checked
// before answering, a non-trickle answer MACed under our key, the `video` and `control` DataChannels, and
// reconnection with backoff whenever any of it goes away.

import { answerMac, verifyOfferMac } from './keys.js';
import { SignalingClient } from './signaling.js';

export const BACKOFF = { initialMs: 500, maxMs: 10_000, factor: 2, jitter: 0.2 };

/** Delay before reconnection attempt number `failures` (0-based): exponential, capped, with ±20 % jitter. */
export function backoffDelay(failures, { initialMs, maxMs, factor, jitter } = BACKOFF, random = Math.random) {
  const base = Math.min(maxMs, initialMs * factor ** Math.max(0, failures));
  return Math.round(base * (1 + jitter * (2 * random() - 1)));
}

/** Resolve once `pc` finished gathering ICE candidates (or after `timeoutMs`, with what it has). */
function gatheringComplete(pc, timeoutMs) {
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

/**
 * Keeps one viewer connected to the desktop of `keys.room`, for as long as it is not stopped.
 *
 * Callbacks: `onState(state, reason)` with state in 'connecting' | 'waiting' | 'connected' | 'reconnecting' |
 * 'failed'; `onOpen()` when the control channel opens (a fresh connection: reset stream state);
 * `onClose()` when that connection ends; `onControl(text)`; `onVideo(arrayBuffer)`; `log(key, ...args)` to
 * report a dropped message once per key.
 */
export class PeerSession {
  constructor({
    url,
    keys,
    onState = () => {},
    onOpen = () => {},
    onClose = () => {},
    onControl = () => {},
    onVideo = () => {},
    log = () => {},
    RTCPeerConnectionImpl = globalThis.RTCPeerConnection,
    WebSocketImpl = globalThis.WebSocket,
    gatherTimeoutMs = 5_000,
    handshakeTimeoutMs = 15_000,
    disconnectGraceMs = 5_000,
    stableMs = 10_000,
  }) {
    this._url = url;
    this._keys = keys;
    this._cb = { onState, onOpen, onClose, onControl, onVideo, log };
    this._RTCPeerConnection = RTCPeerConnectionImpl;
    this._WebSocket = WebSocketImpl;
    this._gatherTimeoutMs = gatherTimeoutMs;
    this._handshakeTimeoutMs = handshakeTimeoutMs;
    this._disconnectGraceMs = disconnectGraceMs;
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

  /** Send one control message (an object); false when the control channel is not open. */
  send(message) {
    const ch = this._control;
    if (ch === null || ch.readyState !== 'open') return false;
    ch.send(JSON.stringify(message));
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
      WebSocketImpl: this._WebSocket,
      onMessage: (msg) => this._onSignal(token, msg),
      onClose: (reason) => this._retry(token, reason),
      onDrop: (reason) => this._cb.log(`signal:${reason}`, `dropped a signaling message: ${reason}`),
    });
    this._sig.open();
    this._arm(token, 'the desktop did not send an offer in time');
  }

  _onSignal(token, msg) {
    if (token !== this._attempt) return;
    switch (msg.type) {
      case 'welcome':
        this._peerId = msg.peer;
        break;
      case 'waiting':
        this._disarm();
        this._setState('waiting', '');
        break;
      case 'desktop-gone':
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
        this._retry(token, `the desktop refused this viewer: ${msg.reason || 'no reason given'}`, 'failed');
        break;
    }
  }

  async _answer(token, offer) {
    const { kv, kc, role } = this._keys;
    const peer = this._peerId;
    if (!(await verifyOfferMac(kv, peer, offer.sdp, offer.mac))) {
      if (token !== this._attempt) return;
      // Wrong link or tampered signaling: never answer. The watchdog retries later, in case it was a fluke.
      this._cb.log('signal:offer.mac', 'dropped an offer whose MAC does not verify');
      this._setState('failed', 'the desktop’s offer failed authentication (wrong link, or signaling was tampered with)');
      return;
    }
    if (token !== this._attempt) return;
    this._closePeer(); // a fresh offer replaces any previous connection
    this._setState(this._phase(), this._lastFailure);
    this._arm(token, 'the peer connection did not come up in time');
    const pc = new this._RTCPeerConnection({ iceServers: [] });
    this._pc = pc;
    pc.ondatachannel = (ev) => this._onChannel(token, pc, ev.channel);
    pc.onconnectionstatechange = () => this._onPcState(token, pc);
    await pc.setRemoteDescription({ type: 'offer', sdp: offer.sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    if (!(await gatheringComplete(pc, this._gatherTimeoutMs))) {
      this._cb.log('ice:gather-timeout', 'ICE gathering did not complete; answering with the candidates found so far');
    }
    if (token !== this._attempt || pc !== this._pc) return;
    const sdp = pc.localDescription.sdp;
    const mac = await answerMac(role === 'control' ? kc : kv, peer, sdp);
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
      channel.onclose = () => this._retry(token, 'the desktop closed the video channel');
    } else if (channel.label === 'control') {
      this._control = channel;
      channel.onmessage = (ev) => {
        if (typeof ev.data === 'string') this._cb.onControl(ev.data);
        else this._cb.log('control:binary', 'dropped a binary message on the control channel');
      };
      channel.onopen = () => this._onControlOpen(token);
      channel.onclose = () => this._retry(token, 'the desktop closed the connection');
      if (channel.readyState === 'open') this._onControlOpen(token);
    } else {
      this._cb.log(`channel:${channel.label}`, `ignored an unknown DataChannel ${JSON.stringify(channel.label)}`);
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
            () => this._retry(token, 'the connection to the desktop was lost'),
            this._disconnectGraceMs,
          );
        }
        break;
      case 'failed':
        this._retry(token, 'the peer connection failed');
        break;
      case 'closed':
        this._retry(token, 'the peer connection closed');
        break;
    }
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

  _arm(token, reason) {
    this._disarm();
    this._watchdog = setTimeout(() => this._retry(token, reason), this._handshakeTimeoutMs);
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
    }
  }
}
