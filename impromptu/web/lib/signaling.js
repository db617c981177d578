// The page's side of the signaling websocket (docs/protocol.md §2): hello → welcome/waiting → offer → answer.
// One socket per connection attempt; every server message is validated and malformed ones are dropped.

export const MAX_MESSAGE = 64 * 1024;
const ROOM_RE = /^[A-Za-z0-9_-]{22}$/;

/** `ws://host/ws` for an http page, `wss://host/ws` for https. `loc` is a `Location` or `URL`. */
export function signalingUrl(loc) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/ws`;
}

const str = (v, max) => typeof v === 'string' && v.length > 0 && v.length <= max;

/**
 * Validate one server → page message (text). Returns `{ok: true, msg}` with only the known fields, or
 * `{ok: false, reason}`. Pure.
 */
export function parseServerMessage(text) {
  if (typeof text !== 'string') return { ok: false, reason: 'binary message' };
  if (text.length > MAX_MESSAGE) return { ok: false, reason: 'message over 64 KiB' };
  let raw;
  try {
    raw = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw) || typeof raw.type !== 'string') {
    return { ok: false, reason: 'not an object with a type' };
  }
  switch (raw.type) {
    case 'welcome':
      if (!str(raw.peer, 256)) return { ok: false, reason: 'welcome.peer' };
      return { ok: true, msg: { type: 'welcome', peer: raw.peer } };
    case 'waiting':
      return { ok: true, msg: { type: 'waiting' } };
    case 'desktop-gone':
      return { ok: true, msg: { type: 'desktop-gone' } };
    case 'offer':
      if (!str(raw.peer, 256)) return { ok: false, reason: 'offer.peer' };
      if (!str(raw.sdp, MAX_MESSAGE)) return { ok: false, reason: 'offer.sdp' };
      if (!str(raw.mac, 64)) return { ok: false, reason: 'offer.mac' };
      return { ok: true, msg: { type: 'offer', peer: raw.peer, sdp: raw.sdp, mac: raw.mac } };
    case 'reject': {
      const reason = typeof raw.reason === 'string' ? raw.reason.slice(0, 200) : '';
      return { ok: true, msg: { type: 'reject', peer: typeof raw.peer === 'string' ? raw.peer : null, reason } };
    }
    default:
      return { ok: false, reason: `unknown type ${JSON.stringify(raw.type).slice(0, 40)}` };
  }
}

/**
 * One signaling socket. `onMessage(msg)` gets validated messages, `onDrop(reason)` malformed ones, and
 * `onClose(reason)` fires once if the server or the network ends the socket (not after our own `close()`).
 */
export class SignalingClient {
  constructor(url, room, { onMessage, onClose, onDrop = () => {}, WebSocketImpl = globalThis.WebSocket } = {}) {
    if (!ROOM_RE.test(room)) throw new Error(`bad room id ${room}`);
    this.url = url;
    this.room = room;
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
    ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', room: this.room, role: 'viewer' }));
    ws.onmessage = (ev) => {
      if (this._closed) return;
      const parsed = parseServerMessage(ev.data);
      if (parsed.ok) this._onMessage(parsed.msg);
      else this._onDrop(parsed.reason);
    };
    ws.onerror = () => {}; // always followed by close, which carries what there is to say
    ws.onclose = (ev) => this._finish(ev.code === 1000 ? 'the signaling server closed the connection' : 'signaling connection lost');
  }

  /** Send the MACed answer. The server adds our peer id itself. */
  sendAnswer(sdp, mac) {
    if (this._ws === null || this._ws.readyState !== 1) return false;
    this._ws.send(JSON.stringify({ type: 'answer', sdp, mac }));
    return true;
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
