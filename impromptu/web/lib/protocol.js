// Wire protocol v1 (docs/protocol.md §4, §5, §8, and §9's listing): video fragment framing, frame reassembly with
// the loss rules, and the control-message schema. Pure and DOM-free so `node --test` can exercise it.

export const VERSION = 1;
export const HEADER_SIZE = 24;
export const MAX_MESSAGE = 16 * 1024;
export const MAX_PAYLOAD = MAX_MESSAGE - HEADER_SIZE; // 16 360
export const FLAG_KEYFRAME = 0x01;

const U32 = 2 ** 32;

/** Signed distance from sequence number `b` to `a` on the 2³² circle: > 0 when `a` is newer. */
export function seqDiff(a, b) {
  return (a - b) | 0;
}

/** The next sequence number after `seq`, wrapping at 2³². */
export function seqNext(seq) {
  return (seq + 1) % U32;
}

function asBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return null;
}

/**
 * Parse one fragment's header. Returns `{version, flags, keyframe, surface, seq, index, count, size, captureUs,
 * payload}` (payload is a view, not a copy), or `null` when the message is too short or not binary. Field values
 * are not validated here; see `validateHeader`.
 */
export function parseFragment(data) {
  const bytes = asBytes(data);
  if (bytes === null || bytes.byteLength < HEADER_SIZE) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_SIZE);
  const flags = view.getUint8(1);
  return {
    version: view.getUint8(0),
    flags,
    keyframe: (flags & FLAG_KEYFRAME) !== 0,
    surface: view.getUint16(2, true),
    seq: view.getUint32(4, true),
    index: view.getUint16(8, true),
    count: view.getUint16(10, true),
    size: view.getUint32(12, true),
    // µs since the epoch fits a double exactly until the year 2255.
    captureUs: Number(view.getBigUint64(16, true)),
    payload: bytes.subarray(HEADER_SIZE),
  };
}

/** Why a parsed header is unusable on its own (rule 1), or `null` when it is fine. */
export function validateHeader(h) {
  if (h.version !== VERSION) return 'version';
  if (h.count < 1) return 'count';
  if (h.index >= h.count) return 'index';
  if (h.size < 1) return 'size';
  if (h.payload.byteLength > h.size) return 'overflow';
  return null;
}

/**
 * Build one fragment message. `h` has `surface`, `seq`, `index`, `count`, `size`, `captureUs` and either
 * `keyframe` (bool) or raw `flags`; `version` defaults to 1.
 */
export function buildFragment(h, payload) {
  const body = asBytes(payload) ?? new Uint8Array(0);
  const out = new Uint8Array(HEADER_SIZE + body.byteLength);
  const view = new DataView(out.buffer);
  view.setUint8(0, h.version ?? VERSION);
  view.setUint8(1, h.flags ?? (h.keyframe ? FLAG_KEYFRAME : 0));
  view.setUint16(2, h.surface ?? 0, true);
  view.setUint32(4, h.seq >>> 0, true);
  view.setUint16(8, h.index, true);
  view.setUint16(10, h.count, true);
  view.setUint32(12, h.size ?? body.byteLength, true);
  view.setBigUint64(16, BigInt(Math.max(0, Math.floor(h.captureUs ?? 0))), true);
  out.set(body, HEADER_SIZE);
  return out;
}

/** Cut one encoded frame into fragment messages of at most `MAX_MESSAGE` bytes (what the desktop, or a relay, sends). */
export function fragmentFrame({ surface = 0, seq, keyframe = false, captureUs = 0 }, data, maxPayload = MAX_PAYLOAD) {
  const bytes = asBytes(data);
  const count = Math.max(1, Math.ceil(bytes.byteLength / maxPayload));
  if (count > 0xffff) throw new RangeError(`frame of ${bytes.byteLength} bytes needs more than 65535 fragments`);
  const out = [];
  for (let index = 0; index < count; index++) {
    const part = bytes.subarray(index * maxPayload, (index + 1) * maxPayload);
    out.push(buildFragment({ surface, seq, index, count, size: bytes.byteLength, captureUs, keyframe }, part));
  }
  return out;
}

const defaultNow = () => (globalThis.performance ? globalThis.performance.now() : Date.now());

/**
 * Reassembles the fragments of one surface into frames and applies the loss rules of protocol.md §4:
 *
 * 1. malformed fragments are dropped (counted in `dropped[reason]`, reported once per reason through `onDrop`);
 * 2. fragments are put together in any order;
 * 3. frames are delivered in increasing `seq` (with wrap-around) only; an incomplete frame is lost when a newer
 *    one completes, after `timeoutMs`, or when more than `maxFrames` are in reassembly;
 * 4. after any loss, delta frames are withheld until the next keyframe, and `onKeyframeRequest()` is called at
 *    most once per `requestIntervalMs` while waiting.
 *
 * For statistics (§10), `onComplete({seq, keyframe, captureUs, size, withheld})` follows every frame completed
 * (`withheld`: a delta frame thrown away while waiting for a keyframe), and `onLost(n)` every loss of `n`
 * incomplete frames.
 *
 * The receiver starts (and `reset()` puts it back) waiting for a keyframe. Call `tick()` periodically so that
 * timeouts and repeated requests happen even when no fragment arrives.
 */
export class Reassembler {
  constructor({
    surface = 0,
    now = defaultNow,
    timeoutMs = 1000,
    maxFrames = 8,
    requestIntervalMs = 500,
    onKeyframeRequest = () => {},
    onDrop = () => {},
    onComplete = () => {},
    onLost = () => {},
  } = {}) {
    this.surface = surface;
    this._onComplete = onComplete;
    this._onLost = onLost;
    this._now = now;
    this._timeoutMs = timeoutMs;
    this._maxFrames = maxFrames;
    this._requestIntervalMs = requestIntervalMs;
    this._onKeyframeRequest = onKeyframeRequest;
    this._onDrop = onDrop;
    this._pending = new Map(); // seq -> {seq, keyframe, captureUs, count, size, received, parts, bytes, since}
    this._last = null; // seq of the newest frame accepted (delivered, or skipped while waiting)
    this._lostSeqs = []; // recently lost frames, so their late fragments don't start them again
    this._waiting = true;
    this._lastRequest = -Infinity;
    // After a (re)start the desktop sends a keyframe by itself; ask only if none came within one interval.
    this._graceUntil = now() + requestIntervalMs;
    this.delivered = 0;
    this.lost = 0;
    this.skipped = 0;
    this.requests = 0;
    this.dropped = {};
  }

  /** True while delta frames are withheld until a keyframe. */
  get waitingForKeyframe() {
    return this._waiting;
  }

  /** Frames currently in reassembly. */
  get pendingCount() {
    return this._pending.size;
  }

  /** Forget frames in flight and wait for a keyframe again (a new `config`); old frames stay refused. */
  reset() {
    this._pending.clear();
    this._waiting = true;
    this._graceUntil = this._now() + this._requestIntervalMs;
  }

  /** Something downstream (the decoder) lost its state: wait for a keyframe and ask for one now. */
  needKeyframe() {
    this._startWaiting();
  }

  /**
   * Take one fragment message. Returns a complete, decodable frame
   * `{surface, seq, keyframe, captureUs, data: Uint8Array}` or `null`.
   */
  push(message) {
    const now = this._now();
    this._expire(now);
    const h = parseFragment(message);
    if (h === null) return this._drop('short');
    const bad = validateHeader(h);
    if (bad !== null) return this._drop(bad);
    if (h.surface !== this.surface) return this._drop('surface');
    if (this._last !== null && seqDiff(h.seq, this._last) <= 0) return this._drop('old');
    if (this._lostSeqs.includes(h.seq)) return this._drop('lost');

    let frame = this._pending.get(h.seq);
    if (frame === undefined) {
      if (this._pending.size >= this._maxFrames) this._evictOldest();
      frame = {
        seq: h.seq,
        keyframe: h.keyframe,
        captureUs: h.captureUs,
        count: h.count,
        size: h.size,
        received: 0,
        bytes: 0,
        parts: new Array(h.count),
        since: now,
      };
      this._pending.set(h.seq, frame);
    } else {
      if (h.count !== frame.count || h.size !== frame.size) return this._drop('mismatch');
      if (frame.parts[h.index] !== undefined) return this._drop('duplicate');
      if (frame.bytes + h.payload.byteLength > frame.size) return this._drop('overflow');
    }
    frame.parts[h.index] = h.payload;
    frame.received += 1;
    frame.bytes += h.payload.byteLength;
    if (frame.received < frame.count) return null;

    this._pending.delete(frame.seq);
    if (frame.bytes !== frame.size) {
      this._forget(frame.seq);
      // Every index arrived but the payloads fall short of `size`: the frame can never be right.
      this._drop('short-frame');
      this._lose(1);
      return null;
    }
    return this._complete(frame);
  }

  /** Expire stale frames and repeat a due keyframe request. Call it every 100–250 ms. */
  tick() {
    const now = this._now();
    this._expire(now);
    if (this._waiting) this._maybeRequest(now);
  }

  _complete(frame) {
    let lost = 0;
    for (const seq of [...this._pending.keys()]) {
      if (seqDiff(seq, frame.seq) < 0) {
        this._pending.delete(seq); // older than a delivered frame: refused as 'old' from now on
        lost += 1;
      }
    }
    const gap = this._last !== null && seqDiff(frame.seq, this._last) > 1;
    this._last = frame.seq;
    if (lost > 0) this._onLost(lost);
    if (lost > 0 || gap) {
      this.lost += lost;
      // A keyframe is itself the cure for anything lost before it.
      if (!frame.keyframe) this._startWaiting();
    }
    if (frame.keyframe) {
      this._waiting = false;
      this._graceUntil = -Infinity; // the keyframe after the (re)start came: from now on a loss asks at once
    } else if (this._waiting) {
      this.skipped += 1;
      this._completed(frame, true);
      this._maybeRequest(this._now());
      return null;
    }
    this.delivered += 1;
    this._completed(frame, false);
    const data = new Uint8Array(frame.size);
    let offset = 0;
    for (const part of frame.parts) {
      data.set(part, offset);
      offset += part.byteLength;
    }
    return { surface: this.surface, seq: frame.seq, keyframe: frame.keyframe, captureUs: frame.captureUs, data };
  }

  _completed(frame, withheld) {
    const { seq, keyframe, captureUs, size } = frame;
    this._onComplete({ seq, keyframe, captureUs, size, withheld });
  }

  _expire(now) {
    let lost = 0;
    for (const [seq, frame] of this._pending) {
      if (now - frame.since > this._timeoutMs) {
        this._forget(seq);
        lost += 1;
      }
    }
    if (lost > 0) this._lose(lost);
  }

  _evictOldest() {
    let oldest = null;
    for (const seq of this._pending.keys()) {
      if (oldest === null || seqDiff(seq, oldest) < 0) oldest = seq;
    }
    this._forget(oldest);
    this._lose(1);
  }

  _lose(n) {
    this.lost += n;
    this._onLost(n);
    this._startWaiting();
  }

  _startWaiting() {
    // A loss asks at once: at most once per interval, and not in the grace period after a (re)start, when a
    // keyframe is on its way anyway (frames in flight across a `config` leave a gap that is no real loss).
    this._waiting = true;
    this._maybeRequest(this._now());
  }

  _maybeRequest(now) {
    if (now < this._graceUntil || now - this._lastRequest < this._requestIntervalMs) return;
    this._lastRequest = now;
    this.requests += 1;
    this._onKeyframeRequest();
  }

  _forget(seq) {
    this._pending.delete(seq);
    this._lostSeqs.push(seq);
    if (this._lostSeqs.length > 2 * this._maxFrames) this._lostSeqs.shift();
  }

  _drop(reason) {
    const first = !(reason in this.dropped);
    this.dropped[reason] = (this.dropped[reason] ?? 0) + 1;
    if (first) this._onDrop(reason);
    return null;
  }
}

// ---- control messages (§5) ----

/**
 * The JSON object with a string `type` that every control and signaling message is: `{ok: true, raw}`, or
 * `{ok: false, reason}` with `reason` 'not JSON' or 'not an object with a type'. The caller checks the fields.
 */
export function parseTyped(text) {
  let raw;
  try {
    raw = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw) || typeof raw.type !== 'string') {
    return { ok: false, reason: 'not an object with a type' };
  }
  return { ok: true, raw };
}

const isInt = (v, lo, hi) => Number.isInteger(v) && v >= lo && v <= hi;
// Peer ids are made by the signaling server (16 hex digits today); a page only shows and compares them.
export const isPeer = (v) => typeof v === 'string' && v.length > 0 && v.length <= 256;
const MAX_VIEWERS = 0xffff;
/** At most this many characters in a window's title and in a surface's state reason (§8). */
export const MAX_TEXT = 200;
const isText = (v) => typeof v === 'string' && v.length <= MAX_TEXT;
/** A surface's `surface.state` (§8). */
export const SURFACE_STATES = new Set(['live', 'paused', 'ended']);
/** At most this many peers in a relay's `relay.viewers` and in a presence's `relayed` (§7). */
export const MAX_RELAYED = 1024;

/**
 * A presence's `relayed` map `{PEER: "control" | "view"}`, or `null` when malformed. The copy is built with
 * `Object.fromEntries` so that a peer id such as `__proto__` stays an ordinary key.
 */
function parseRelayed(raw) {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return null;
  const entries = Object.entries(raw);
  if (entries.length > MAX_RELAYED) return null;
  for (const [peer, role] of entries) {
    if (!isPeer(peer) || (role !== 'control' && role !== 'view')) return null;
  }
  return Object.fromEntries(entries);
}

/** At most this many files in a `file.list` (§9). */
export const MAX_FILES = 1000;
/** A file's name (§9): 1 to 255 bytes of UTF-8, hence at most 255 UTF-16 code units. */
const isFileName = (v) => typeof v === 'string' && v.length > 0 && v.length <= 255;
const isSize = (v) => Number.isSafeInteger(v) && v >= 0;

/**
 * A desktop's `file.list` (§9), as `{type, enabled, files: [{name, size, mtime}], upload, max_size}`. A desktop
 * without files (`enabled: false`) sends nothing else: the message then says no files, no uploads. Names are
 * checked only for being shown safely (the desktop decides which are acceptable), never cleaned up.
 */
function parseFileList(raw) {
  if (typeof raw.enabled !== 'boolean') return { ok: false, reason: 'file.list.enabled' };
  if (!raw.enabled) {
    return { ok: true, msg: { type: 'file.list', enabled: false, files: [], upload: false, max_size: 0 } };
  }
  const { files, upload, max_size: maxSize } = raw;
  if (!Array.isArray(files) || files.length > MAX_FILES) return { ok: false, reason: 'file.list.files' };
  const out = [];
  for (const f of files) {
    if (f === null || typeof f !== 'object' || !isFileName(f.name) || !isSize(f.size) || !Number.isFinite(f.mtime)) {
      return { ok: false, reason: 'file.list.files' };
    }
    out.push({ name: f.name, size: f.size, mtime: f.mtime });
  }
  if (typeof upload !== 'boolean') return { ok: false, reason: 'file.list.upload' };
  if (!isSize(maxSize)) return { ok: false, reason: 'file.list.max_size' };
  return { ok: true, msg: { type: 'file.list', enabled: true, files: out, upload, max_size: maxSize } };
}

/** A `diagnosis` verdict (§10, docs/diagnosis.md). */
export const VERDICTS = new Set(['healthy', 'network', 'viewer', 'desktop']);
/** At most this many reasons in a `diagnosis`, and figures kept of it. */
export const MAX_REASONS = 16;
export const MAX_FIGURES = 64;
const FIGURES_DEPTH = 4;

/**
 * A `diagnosis`'s `figures` (the desktop's view of the connection, nested as it likes), flattened for showing:
 * `{"path.to.figure": value}` for its numbers, booleans, nulls and short strings, at most `MAX_FIGURES` of them
 * and `FIGURES_DEPTH` levels deep; the rest is left out. Null when `figures` is not an object.
 */
export function flattenFigures(figures) {
  if (figures === null || typeof figures !== 'object' || Array.isArray(figures)) return null;
  const out = [];
  const walk = (value, path, depth) => {
    if (out.length >= MAX_FIGURES) return;
    if (value === null || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value))) {
      out.push([path, value]);
    } else if (typeof value === 'string') {
      if (value.length <= MAX_TEXT) out.push([path, value]);
    } else if (typeof value === 'object' && depth < FIGURES_DEPTH) {
      const items = Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value);
      for (const [k, v] of items.slice(0, MAX_FIGURES)) {
        walk(v, path === '' ? k.slice(0, 40) : `${path}.${k.slice(0, 40)}`, depth + 1);
      }
    }
  };
  walk(figures, '', 0);
  return Object.fromEntries(out);
}

/**
 * Validate a desktop → page control message (text). Returns `{ok: true, msg}` with only the known fields, or
 * `{ok: false, reason}` for something to drop and log once per `reason` (one of a fixed few; an unknown type adds
 * `detail`, the type quoted and shortened).
 */
export function parseControl(text) {
  if (typeof text !== 'string') return { ok: false, reason: 'not text' };
  const parsed = parseTyped(text);
  if (!parsed.ok) return parsed;
  const raw = parsed.raw;
  switch (raw.type) {
    case 'config': {
      const { surface, codec, width, height, fps } = raw;
      if (!isInt(surface, 0, 0xffff)) return { ok: false, reason: 'config.surface' };
      if (typeof codec !== 'string' || codec.length === 0 || codec.length > 100) {
        return { ok: false, reason: 'config.codec' };
      }
      if (!isInt(width, 1, 16384)) return { ok: false, reason: 'config.width' };
      if (!isInt(height, 1, 16384)) return { ok: false, reason: 'config.height' };
      if (!isInt(fps, 0, 1000)) return { ok: false, reason: 'config.fps' };
      const msg = { type: 'config', surface, codec, width, height, fps };
      // §8: a shared window's title, for the page's tab. Absent for the whole display (and from older desktops).
      if (raw.title !== undefined) {
        if (!isText(raw.title)) return { ok: false, reason: 'config.title' };
        msg.title = raw.title;
      }
      return { ok: true, msg };
    }
    case 'surface.state': {
      const { surface, state, reason } = raw;
      if (!isInt(surface, 0, 0xffff)) return { ok: false, reason: 'surface.state.surface' };
      if (!SURFACE_STATES.has(state)) return { ok: false, reason: 'surface.state.state' };
      if (!isText(reason)) return { ok: false, reason: 'surface.state.reason' };
      return { ok: true, msg: { type: 'surface.state', surface, state, reason } };
    }
    case 'presence': {
      const { you, role, viewers, controllers, mode, holder, requests } = raw;
      if (!isPeer(you)) return { ok: false, reason: 'presence.you' };
      if (role !== 'control' && role !== 'view') return { ok: false, reason: 'presence.role' };
      if (!isInt(viewers, 1, MAX_VIEWERS)) return { ok: false, reason: 'presence.viewers' };
      if (!isInt(controllers, 0, viewers)) return { ok: false, reason: 'presence.controllers' };
      if (mode !== 'shared' && mode !== 'one') return { ok: false, reason: 'presence.mode' };
      if (holder !== null && !(mode === 'one' && isPeer(holder))) return { ok: false, reason: 'presence.holder' };
      if (!Array.isArray(requests) || requests.length > viewers || !requests.every(isPeer)) {
        return { ok: false, reason: 'presence.requests' };
      }
      if (mode === 'shared' && requests.length > 0) return { ok: false, reason: 'presence.requests' };
      const msg = { type: 'presence', you, role, viewers, controllers, mode, holder, requests: [...requests] };
      // Only a relay is sent `relayed`: the roles of the viewers it serves.
      if (raw.relayed !== undefined) {
        const relayed = parseRelayed(raw.relayed);
        if (relayed === null) return { ok: false, reason: 'presence.relayed' };
        msg.relayed = relayed;
      }
      return { ok: true, msg };
    }
    case 'stream.skipped': {
      const { surface, frames } = raw;
      if (!isInt(surface, 0, 0xffff)) return { ok: false, reason: 'stream.skipped.surface' };
      if (!isInt(frames, 1, U32 - 1)) return { ok: false, reason: 'stream.skipped.frames' };
      return { ok: true, msg: { type: 'stream.skipped', surface, frames } };
    }
    case 'file.list':
      return parseFileList(raw);
    case 'diagnosis': {
      // §10: the desktop's verdict on this page's connection, once a second.
      const { verdict, reasons } = raw;
      if (!VERDICTS.has(verdict)) return { ok: false, reason: 'diagnosis.verdict' };
      if (!Array.isArray(reasons) || reasons.length > MAX_REASONS || !reasons.every(isText)) {
        return { ok: false, reason: 'diagnosis.reasons' };
      }
      const figures = raw.figures === undefined || raw.figures === null ? {} : flattenFigures(raw.figures);
      if (figures === null) return { ok: false, reason: 'diagnosis.figures' };
      const msg = { type: 'diagnosis', verdict, reasons: [...reasons], figures };
      // To a relay, about one of its viewers (`peer`): the relay passes it on to that viewer alone.
      if (raw.peer !== undefined) {
        if (typeof raw.peer !== 'string' || raw.peer.length === 0 || raw.peer.length > 256) {
          return { ok: false, reason: 'diagnosis.peer' };
        }
        msg.peer = raw.peer;
      }
      return { ok: true, msg };
    }
    default:
      // `reason` is one of a fixed few (pages log once per reason); `detail` holds what the sender chose.
      return { ok: false, reason: 'unknown type', detail: JSON.stringify(raw.type.slice(0, 40)) };
  }
}

/**
 * Whether `config` only renames its surface (§8): the same surface, codec, size and frame rate as `before`, and a
 * title that differs from it. Such a `config` announces no new stream — no keyframe need follow it — so a page
 * keeps decoding and only relabels the tab. Any other repeated `config` (a new size, or the very same one, which
 * behind a relay may announce a new upstream whose frame numbers start over) starts the surface afresh.
 */
export function isRename(before, config) {
  return (
    before !== null &&
    before !== undefined &&
    before.surface === config.surface &&
    before.codec === config.codec &&
    before.width === config.width &&
    before.height === config.height &&
    before.fps === config.fps &&
    typeof config.title === 'string' &&
    config.title !== before.title
  );
}

const ROLE_TYPES = new Set(['control.hello', 'control.request', 'control.release']);

/**
 * Whether a page → desktop message type needs the sender's role (§7): behind a relay such a message travels in a
 * sealed `relayed` envelope, and a relay drops it bare.
 */
export function needsRole(type) {
  return typeof type === 'string' && (type.startsWith('input.') || ROLE_TYPES.has(type));
}

/**
 * Page → desktop messages, built in one place so their shape matches §5. Input names the surface it acts on
 * (§8), always — `0`, the whole display, included — so that what the page meant never rests on a default.
 */
export const controlMessages = {
  keyframeRequest: (surface) => ({ type: 'keyframe.request', surface }),
  move: (x, y, surface = 0) => ({ type: 'input.move', x, y, surface }),
  button: (button, down, x, y, surface = 0) => ({ type: 'input.button', button, down, x, y, surface }),
  wheel: (dx, dy, x, y, surface = 0) => ({ type: 'input.wheel', dx, dy, x, y, surface }),
  key: (code, key, down, surface = 0) => ({ type: 'input.key', code, key, down, surface }),
  release: () => ({ type: 'input.release' }),
  controlRequest: () => ({ type: 'control.request' }),
  controlRelease: () => ({ type: 'control.release' }),
  controlHello: () => ({ type: 'control.hello' }),
  fileList: () => ({ type: 'file.list' }),
};
