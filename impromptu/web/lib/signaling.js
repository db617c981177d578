// The page's side of the signaling websocket (docs/protocol.md §2): hello → welcome/waiting → offer → answer.
// A relay (§7) also speaks the desktop's side for its own viewers: join → offer → answer, leave.
// One socket per connection attempt; every server message is validated and malformed ones are dropped.

import { parseTyped } from './protocol.js';

export const MAX_MESSAGE = 64 * 1024;
const ROOM_RE = /^[A-Za-z0-9_-]{22}$/;

/** `ws://host/ws` for an http page, `wss://host/ws` for https. `loc` is a `Location` or `URL`. */
export function signalingUrl(loc) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/ws`;
}

const str = (v, max) => typeof v === 'string' && v.length > 0 && v.length <= max;

/**
 * Validate one server → page message (text). `role` is the one the page said in its hello: only a relay is sent
 * `join`, `answer` and `leave`. Returns `{ok: true, msg}` with only the known fields, or `{ok: false, reason}`
 * (`reason` one of a fixed few; an unknown type adds `detail`, the type quoted and shortened). Pure.
 */
export function parseServerMessage(text, role = 'viewer') {
  if (typeof text !== 'string') return { ok: false, reason: 'binary message' };
  if (text.length > MAX_MESSAGE) return { ok: false, reason: 'message over 64 KiB' };
  const parsed = parseTyped(text);
  if (!parsed.ok) return parsed;
  const raw = parsed.raw;
  switch (raw.type) {
    case 'welcome':
      if (!str(raw.peer, 256)) return { ok: false, reason: 'welcome.peer' };
      return { ok: true, msg: { type: 'welcome', peer: raw.peer } };
    case 'waiting': {
      if (raw.reason === undefined) return { ok: true, msg: { type: 'waiting' } };
      if (typeof raw.reason !== 'string') return { ok: false, reason: 'waiting.reason' };
      return { ok: true, msg: { type: 'waiting', reason: raw.reason.slice(0, 200) } };
    }
    case 'desktop-gone':
      return { ok: true, msg: { type: 'desktop-gone' } };
    case 'offer':
      if (!str(raw.peer, 256)) return { ok: false, reason: 'offer.peer' };
      if (!str(raw.sdp, MAX_MESSAGE)) return { ok: false, reason: 'offer.sdp' };
      if (!str(raw.mac, 64)) return { ok: false, reason: 'offer.mac' };
      // The server stamps `relay: true` on offers a relay made (§7): the answer is then MACed under Kv.
      if (raw.relay !== undefined && typeof raw.relay !== 'boolean') return { ok: false, reason: 'offer.relay' };
      return {
        ok: true,
        msg: { type: 'offer', peer: raw.peer, sdp: raw.sdp, mac: raw.mac, relay: raw.relay === true },
      };
    case 'reject': {
      const reason = typeof raw.reason === 'string' ? raw.reason.slice(0, 200) : '';
      return { ok: true, msg: { type: 'reject', peer: typeof raw.peer === 'string' ? raw.peer : null, reason } };
    }
    case 'join':
    case 'leave':
      if (role !== 'relay') break;
      if (!str(raw.peer, 256)) return { ok: false, reason: `${raw.type}.peer` };
      return { ok: true, msg: { type: raw.type, peer: raw.peer } };
    case 'answer':
      if (role !== 'relay') break;
      if (!str(raw.peer, 256)) return { ok: false, reason: 'answer.peer' };
      if (!str(raw.sdp, MAX_MESSAGE)) return { ok: false, reason: 'answer.sdp' };
      if (!str(raw.mac, 64)) return { ok: false, reason: 'answer.mac' };
      return { ok: true, msg: { type: 'answer', peer: raw.peer, sdp: raw.sdp, mac: raw.mac } };
  }
  // `reason` is one of a fixed few (pages log once per reason); `detail` holds what the sender chose.
  return { ok: false, reason: 'unknown type', detail: JSON.stringify(raw.type.slice(0, 40)) };
}

/**
 * One signaling socket. `role` ('viewer' or 'relay') goes in the hello. `onMessage(msg)` gets validated messages,
 * `onDrop(reason, detail)` malformed ones, and `onClose(reason)` fires once if the server or the network ends the socket
 * (not after our own `close()`).
 */
export class SignalingClient {
  constructor(
    url,
    room,
    { role = 'viewer', onMessage, onClose, onDrop = () => {}, WebSocketImpl = globalThis.WebSocket } = {},
  ) {
    if (!ROOM_RE.test(room)) throw new Error(`bad room id ${room}`);
    if (role !== 'viewer' && role !== 'relay') throw new Error(`bad signaling role ${role}`);
    this.url = url;
    this.room = room;
    this.role = role;
    this._onMessage = onMessage;
    this._onClose = onClose;
    this._onDrop = onDrop;
    this._WebSocket = WebSocketImpl;
    this._ws = null;
    this._closed = false;
  }

  open() {
    if (this._ws !== null || this._closed) throw new Error('SignalingClient.open() called twice');
    const ws = new this._WebSocket(this.url);
    this._ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', room: this.room, role: this.role }));
    ws.onmessage = (ev) => {
      if (this._closed) return;
      const parsed = parseServerMessage(ev.data, this.role);
      if (parsed.ok) this._onMessage(parsed.msg);
      else this._onDrop(parsed.reason, parsed.detail);
    };
    ws.onerror = () => {}; // always followed by close, which carries what there is to say
    ws.onclose = (ev) => this._finish(ev.code === 1000 ? 'the signaling server closed the connection' : 'signaling connection lost');
  }

  /** Send the MACed answer. The server adds our peer id itself. */
  sendAnswer(sdp, mac) {
    return this.send({ type: 'answer', sdp, mac });
  }

  /** Send one message (an object): a relay's `capacity`, `offer` and `reject`. False when the socket is not open. */
  send(message) {
    if (this._ws === null || this._closed || this._ws.readyState !== 1) return false;
    this._ws.send(JSON.stringify(message));
    return true;
  }

  /** Whether the socket is closed (by us or by the server). */
  get closed() {
    return this._closed;
  }

  /** Close the socket; idempotent. `onClose` is not called for a close we asked for. */
  close() {
    if (this._closed) return;
    this._closed = true;
    if (this._ws !== null) {
      this._ws.onclose = null;
      this._ws.onmessage = null;
      try {
        this._ws.close(1000);
      } catch {
        // already closing
      }
    }
  }

  _finish(reason) {
    if (this._closed) return;
    this._closed = true;
    this._onClose(reason);
  }
}
