// What a relay does with the stream it forwards (docs/protocol.md §6–7), DOM-free so `node --test` covers it:
// which upstream `video` message goes to which of its viewers (keyframe gating, skipping for a viewer that backs
// up), rate-limited keyframe requests, the viewer → relay control messages, and the viewers it reports upstream
// and the presence it passes down. The connections themselves are relay-app.js's business.

import { MAX_SEALED_MESSAGE } from './keys.js';
import { MAX_STATS_TEXT, parseViewerStats } from './stats.js';
import {
  MAX_PAYLOAD,
  MAX_RELAYED,
  isPeer,
  isRename,
  needsRole,
  parseFragment,
  parseTyped,
  seqDiff,
  validateHeader,
} from './protocol.js';

/** Forced keyframes: at most one per this long per surface, as the desktop does (§6). */
export const KEYFRAME_INTERVAL_MS = 250;
/** A viewer's limit of bytes waiting: half a second of the stream, within these bounds (§6). */
export const MIN_BUFFERED = 1024 * 1024;
export const MAX_BUFFERED = 4 * 1024 * 1024;
export const RATE_WINDOW_MS = 2000;
const LAG_MS = 500;
/** Frames per surface whose fragments are kept, so that a viewer ready mid-keyframe still gets that keyframe whole. */
const KEPT_FRAMES = 2;
/** Frames per surface whose fragments are told apart (duplicates dropped): as many as a receiver reassembles (§4). */
const TRACKED_FRAMES = 8;
/** Per-viewer send/skip decisions remembered per surface, for fragments that arrive after later frames'. */
const DECISIONS_KEPT = 16;
/** Surfaces a relay forwards; fragments of any more are dropped (forward.py's MAX_SURFACES). */
export const MAX_SURFACES = 16;
/** The relay's capacity when `?max=` is not given, and the most §7 allows. */
export const DEFAULT_CAPACITY = 4;
export const MAX_CAPACITY = 64;

const defaultNow = () => (globalThis.performance ? globalThis.performance.now() : Date.now());

/**
 * `?max=N` of the relay page's query (`location.search`): `{ok: true, capacity}` or `{ok: false, reason}` with a
 * sentence for the user.
 */
export function parseCapacity(search) {
  const value = new URLSearchParams(search ?? '').get('max');
  if (value === null) return { ok: true, capacity: DEFAULT_CAPACITY };
  if (!/^[0-9]{1,2}$/.test(value) || Number(value) > MAX_CAPACITY) {
    return {
      ok: false,
      reason: `?max=${value.slice(0, 20)} is not a capacity: give a whole number of viewers from 0 to ${MAX_CAPACITY}`,
    };
  }
  return { ok: true, capacity: Number(value) };
}

/**
 * `?show=0` (this page only relays: it does not decode the stream, which is most of what a relay page costs) or
 * `?show=1` (the default: it shows the stream too). Returns `{ok: true, show}` or `{ok: false, reason}`.
 */
export function parseShow(search) {
  const value = new URLSearchParams(search ?? '').get('show');
  if (value === null || value === '1') return { ok: true, show: true };
  if (value === '0') return { ok: true, show: false };
  return { ok: false, reason: `?show=${value.slice(0, 20)} is neither 0 (relay only) nor 1 (show the stream too)` };
}

/**
 * What a relay does with a `config` of a surface from upstream (§7, §8), given `current`, the last `config` of that
 * surface from the same upstream connection (undefined if none), and `sent`, the last one it sent its viewers
 * (from whichever upstream). Returns `{reset, send}`: whether to forget the surface's frames and have every viewer
 * wait for its next keyframe (VideoFanout.resetSurface), and the messages to send each viewer.
 *
 * A rename (`isRename`) resets nothing, here or at the viewers. A new upstream's first `config` must make viewers
 * start the surface afresh (its frame numbers start over); should it differ from what they have only in `title`,
 * they would take it for a rename, so it goes to them first with the title they know — the very same config,
 * which starts it afresh — and then as it is, which renames it.
 */
export function configsToForward(current, sent, config) {
  if (current !== undefined) return { reset: !isRename(current, config), send: [config] };
  if (sent !== undefined && isRename(sent, config)) {
    const again = { ...config };
    if (sent.title === undefined) delete again.title;
    else again.title = sent.title;
    return { reset: false, send: [again, config] };
  }
  return { reset: false, send: [config] };
}

/**
 * Keyframe requests to upstream, at most one per `intervalMs` per surface (impromptu/relay/forward.py's). A request
 * inside the interval is not lost but deferred to its end (one for any number of them), so a viewer that became
 * ready just after a keyframe went by still gets one — unless a keyframe of that surface starts arriving meanwhile
 * (`keyframeSeen`), which serves it.
 */
export class KeyframeRequests {
  constructor({ send, now = defaultNow, intervalMs = KEYFRAME_INTERVAL_MS }) {
    this._send = send;
    this._now = now;
    this._intervalMs = intervalMs;
    this._last = new Map(); // surface -> time of the last request sent
    this._deferred = new Map(); // surface -> timer
  }

  request(surface) {
    if (this._deferred.has(surface)) return; // one is on its way
    const now = this._now();
    const last = this._last.get(surface) ?? -Infinity;
    if (now - last >= this._intervalMs) {
      this._fire(surface, now);
    } else {
      const timer = setTimeout(() => {
        if (this._deferred.get(surface) !== timer) return;
        this._deferred.delete(surface);
        this._fire(surface, this._now());
      }, last + this._intervalMs - now);
      this._deferred.set(surface, timer);
    }
  }

  /** A keyframe of `surface` started arriving from upstream: a deferred request for it is served. */
  keyframeSeen(surface) {
    const timer = this._deferred.get(surface);
    if (timer === undefined) return;
    clearTimeout(timer);
    this._deferred.delete(surface);
  }

  /** Forget deferred requests (the upstream connection is gone). */
  clear() {
    for (const timer of this._deferred.values()) clearTimeout(timer);
    this._deferred.clear();
  }

  /** A new upstream: nothing was asked of it yet. */
  reset() {
    this.clear();
    this._last.clear();
  }

  _fire(surface, now) {
    this._last.set(surface, now);
    this._send(surface);
  }
}

/**
 * Sends every upstream `video` message on to each viewer, unchanged, under the desktop's rules (§6, §7), as
 * impromptu/relay/forward.py does:
 *
 * - a viewer starts at a keyframe; the fragments of the last two frames are kept, so one whose keyframe began
 *   before it was ready still gets that keyframe whole;
 * - a viewer whose channel holds more than `limit()` bytes is *behind*: it skips whole frames until it has
 *   drained below a quarter of that, then resumes at a keyframe and is told how many frames it missed
 *   (`onSkipped(id, surface, frames)`);
 * - `requestKeyframe(surface)` asks upstream when a viewer needs one to resume; `onKeyframe(surface)` is called
 *   when a keyframe starts arriving from upstream;
 * - memory is bounded: at most `MAX_SURFACES` surfaces (fragments of more are dropped) and `TRACKED_FRAMES`
 *   frames per surface are tracked; a fragment that repeats one already seen, disagrees with its frame's header,
 *   overflows its frame or belongs to a frame long gone is dropped, not forwarded (`onDrop(reason)`, once per
 *   reason, from a fixed few).
 *
 * Frames are decided whole: the first fragment of a frame that a viewer is offered decides whether that frame
 * goes to it, and the frame's other fragments, in whatever order they come, follow that decision.
 *
 * A viewer is added with a sink `{send(message), bufferedAmount, watchDrain(threshold)}`: `watchDrain` must make
 * the channel call `drained(id)` once its buffered bytes fall to `threshold` (`bufferedamountlow`), so that a
 * viewer resumes even while the screen is still.
 */
export class VideoFanout {
  constructor({
    requestKeyframe = () => {},
    onSkipped = () => {},
    onKeyframe = () => {},
    onDrop = () => {},
    now = defaultNow,
  } = {}) {
    this._requestKeyframe = requestKeyframe;
    this._onSkipped = onSkipped;
    this._onKeyframe = onKeyframe;
    this._onDrop = onDrop;
    this._now = now;
    this._viewers = new Map(); // id -> viewer state
    this._surfaces = new Map(); // surface -> {newest, frames: Map(seq -> frame), in arrival order}
    this._recent = []; // [time, bytes] of the last RATE_WINDOW_MS of upstream video
    this._recentBytes = 0;
    this._dropReasons = new Set();
    /** Fragments from upstream that were not forwarded: malformed, duplicate, stale, or of a surface too many. */
    this.dropped = 0;
  }

  /** The bytes a viewer may have waiting before it counts as behind: 0.5 s of the stream, 1 MiB..4 MiB. */
  limit() {
    const rate = this._recentBytes / (RATE_WINDOW_MS / 1000);
    return Math.floor(Math.min(MAX_BUFFERED, Math.max(MIN_BUFFERED, (rate * LAG_MS) / 1000)));
  }

  /** Frames forwarded to and skipped for viewer `id` so far, or null for an unknown viewer. */
  stats(id) {
    const v = this._viewers.get(id);
    return v === undefined ? null : { framesForwarded: v.framesForwarded, framesSkipped: v.framesSkipped };
  }

  has(id) {
    return this._viewers.has(id);
  }

  /**
   * A viewer whose channels are open. Where a kept frame of a surface is a keyframe, it gets the newest such
   * keyframe and the frame after it (what has arrived of them at once, the rest as it comes); on other surfaces it
   * waits for the next keyframe. Returns the surfaces it started on: the caller asks upstream for a keyframe of
   * the others only.
   */
  add(id, sink) {
    const v = { id, sink, behind: false, framesForwarded: 0, framesSkipped: 0, surfaces: new Map() };
    this._viewers.set(id, v);
    const started = [];
    for (const [surfaceId, surface] of this._surfaces) {
      const s = this._surfaceOf(v, surfaceId);
      const frames = [...surface.frames.values()].sort((a, b) => seqDiff(a.seq, b.seq));
      const start = frames.findLast((f) => f.messages !== null && f.keyframe)?.seq ?? null;
      for (const f of frames) {
        const send = start !== null && f.messages !== null && seqDiff(f.seq, start) >= 0;
        this._decided(s, f.seq, send);
        if (!send) continue;
        v.framesForwarded += 1;
        for (const message of f.messages) sink.send(message);
      }
      s.newest = surface.newest;
      if (start !== null) {
        s.started = true;
        s.startSeq = start;
        started.push(surfaceId);
      }
    }
    return started;
  }

  remove(id) {
    this._viewers.delete(id);
  }

  /** Viewer `id`'s channel drained (`bufferedamountlow`): if it was behind, a keyframe will get it going. */
  drained(id) {
    const v = this._viewers.get(id);
    if (v === undefined || !v.behind) return;
    for (const [surface, s] of v.surfaces) if (!s.started) this._requestKeyframe(surface);
  }

  /** A new upstream: its frames have nothing to do with the old one's, so everyone waits for a keyframe. */
  reset() {
    this._surfaces.clear();
    this._recent = [];
    this._recentBytes = 0;
    for (const v of this._viewers.values()) v.surfaces.clear();
  }

  /**
   * A new `config` of `surface` on the same upstream (a chained relay's upstream changed, and with it the frame
   * numbers): forget that surface's frames, and every viewer waits for its next keyframe, whatever its number.
   */
  resetSurface(surface) {
    this._surfaces.delete(surface);
    for (const v of this._viewers.values()) v.surfaces.delete(surface);
  }

  /** One upstream `video` message (an ArrayBuffer or a byte view). */
  push(message) {
    const h = parseFragment(message);
    let bad = h === null ? 'short' : validateHeader(h);
    if (bad === null && h.payload.byteLength > MAX_PAYLOAD) bad = 'large';
    if (bad !== null) return this._drop(bad); // unusable for gating, and every viewer would drop it anyway
    let surface = this._surfaces.get(h.surface);
    if (surface === undefined) {
      if (this._surfaces.size >= MAX_SURFACES) return this._drop('surfaces');
      surface = { newest: null, frames: new Map() };
      this._surfaces.set(h.surface, surface);
    }
    let frame = surface.frames.get(h.seq);
    if (frame === undefined) {
      if (surface.newest !== null && seqDiff(h.seq, surface.newest) <= -KEPT_FRAMES) {
        return this._drop('old'); // its frame started long ago, or was forgotten: nobody could complete it
      }
      frame = this._newFrame(h, surface);
    } else if (frame.count !== h.count || frame.size !== h.size || frame.flags !== h.flags) {
      return this._drop('mismatch');
    }
    if (frame.indices.has(h.index)) return this._drop('duplicate');
    if (frame.received + h.payload.byteLength > frame.size) return this._drop('overflow');
    frame.indices.add(h.index);
    frame.received += h.payload.byteLength;
    this._measure(message.byteLength);
    if (frame.messages !== null) {
      // Bounded like a viewer's own buffer: a frame bigger than that is forwarded but not kept.
      if (frame.kept + message.byteLength <= MAX_BUFFERED) {
        frame.messages.push(message);
        frame.kept += message.byteLength;
      } else {
        frame.messages = null;
      }
    }
    const limit = this.limit();
    for (const v of this._viewers.values()) {
      if (this._decide(v, h, limit)) v.sink.send(message);
    }
  }

  _newFrame(h, surface) {
    const frame = {
      seq: h.seq,
      flags: h.flags,
      keyframe: h.keyframe,
      count: h.count,
      size: h.size,
      indices: new Set(),
      received: 0,
      messages: [], // the fragments so far while this is one of the last KEPT_FRAMES frames; null once not kept
      kept: 0,
    };
    if (frame.keyframe) this._onKeyframe(h.surface);
    if (surface.newest === null || seqDiff(h.seq, surface.newest) > 0) surface.newest = h.seq;
    surface.frames.set(h.seq, frame);
    if (surface.frames.size > TRACKED_FRAMES) surface.frames.delete(surface.frames.keys().next().value);
    for (const old of surface.frames.values()) {
      if (old.messages !== null && seqDiff(surface.newest, old.seq) >= KEPT_FRAMES) old.messages = null;
    }
    return frame;
  }

  _decide(v, h, limit) {
    const s = this._surfaceOf(v, h.surface);
    const known = s.decisions.get(h.seq);
    if (known !== undefined) return known;
    let send;
    if (s.newest !== null && seqDiff(h.seq, s.newest) <= 0) {
      // The first fragment of a frame older than one already decided (the channel is unordered): it goes along
      // if the viewer is running from a keyframe before it. The viewer's own reassembly sorts out the order.
      send = s.started && !v.behind && seqDiff(h.seq, s.startSeq) > 0;
      if (send) v.framesForwarded += 1;
    } else {
      s.newest = h.seq;
      send = this._decideNewest(v, s, h, limit);
    }
    this._decided(s, h.seq, send);
    return send;
  }

  /** The desktop's rule for each new frame (impromptu/stream/hub.py), here at its first fragment. */
  _decideNewest(v, s, h, limit) {
    const buffered = v.sink.bufferedAmount;
    if (buffered > limit || (v.behind && buffered > limit / 4)) {
      if (!v.behind) {
        v.behind = true;
        // Nothing may come from upstream while the screen is still: the drain itself asks for the keyframe.
        v.sink.watchDrain(Math.floor(limit / 4));
      }
      s.started = false;
      s.skipped += 1;
      v.framesSkipped += 1;
      return false;
    }
    if (v.behind) {
      // Caught up: one keyframe per surface gets it going again (this frame, if it is one).
      v.behind = false;
      for (const [surface, other] of v.surfaces) {
        if (!other.started && !(surface === h.surface && h.keyframe)) this._requestKeyframe(surface);
      }
    }
    if (!s.started && !h.keyframe) {
      if (s.skipped > 0) {
        // Only after falling behind: before its first keyframe a viewer has missed nothing.
        s.skipped += 1;
        v.framesSkipped += 1;
      }
      return false;
    }
    if (!s.started) {
      s.started = true;
      s.startSeq = h.seq;
    }
    v.framesForwarded += 1;
    if (s.skipped > 0) {
      this._onSkipped(v.id, h.surface, s.skipped);
      s.skipped = 0;
    }
    return true;
  }

  _surfaceOf(v, surface) {
    let s = v.surfaces.get(surface);
    if (s === undefined) {
      s = { started: false, startSeq: 0, newest: null, skipped: 0, decisions: new Map() };
      v.surfaces.set(surface, s);
    }
    return s;
  }

  _decided(s, seq, send) {
    s.decisions.set(seq, send);
    if (s.decisions.size > DECISIONS_KEPT) s.decisions.delete(s.decisions.keys().next().value);
  }

  _drop(reason) {
    this.dropped += 1;
    if (!this._dropReasons.has(reason)) {
      this._dropReasons.add(reason);
      this._onDrop(reason);
    }
  }

  _measure(bytes) {
    const now = this._now();
    this._recent.push([now, bytes]);
    this._recentBytes += bytes;
    let expired = 0;
    while (expired < this._recent.length && this._recent[expired][0] < now - RATE_WINDOW_MS) {
      this._recentBytes -= this._recent[expired][1];
      expired += 1;
    }
    if (expired > 0) this._recent.splice(0, expired);
  }
}

// ---- viewer → relay control messages (§7) ----

/**
 * The longest `relay.viewers` text a relay reads: 1024 peer ids of the most 256 characters each, quoted and
 * comma-separated, are about 259 KiB. (Real ids, the server's 16 hex digits, make 1024 of them about 20 KB, well
 * within the 64 KiB the desktop reads.)
 */
export const MAX_REPORT_TEXT = 300 * 1024;
/** The longest text of any other viewer → relay message: an envelope with the longest `from` and `box` is ~5.8 KB. */
export const MAX_DOWNSTREAM_TEXT = 8192;
/** A `relayed` envelope's bounds, as impromptu/envelope.py's `parse`. */
const MAX_SEQ = Number.MAX_SAFE_INTEGER; // 2^53 - 1: pages count in doubles
export const MAX_BOX = Math.floor(((MAX_SEALED_MESSAGE + 16) * 4) / 3) + 4; // 5486, as Python's: the sealed message and its tag
const IV_RE = /^[A-Za-z0-9_-]{16}$/; // 12 bytes
const BOX_RE = /^[A-Za-z0-9_-]+$/;

/**
 * Validate one message a viewer sent its relay on the control channel. Returns `{ok: true, msg}` for
 * `keyframe.request`, `relayed` (only its known fields, which are all a relay passes upstream: never the text as
 * received), `relay.viewers` and `stats` (as `{type, page: {pair, pipeline}}`, §10); otherwise `{ok: false,
 * reason}`, to drop and log once per `reason` — one of a fixed few, never text the viewer chose; `detail` may add
 * the message's type, shortened. A message that needs a role but came bare has `reason` "bare".
 */
export function parseDownstream(text) {
  if (typeof text !== 'string') return { ok: false, reason: 'not text' };
  if (text.length > MAX_REPORT_TEXT) return { ok: false, reason: 'too long' };
  const parsed = parseTyped(text);
  if (!parsed.ok) return parsed;
  const raw = parsed.raw;
  const limit =
    raw.type === 'relay.viewers' ? MAX_REPORT_TEXT : raw.type === 'stats' ? MAX_STATS_TEXT : MAX_DOWNSTREAM_TEXT;
  if (text.length > limit) return { ok: false, reason: 'too long' };
  switch (raw.type) {
    case 'keyframe.request':
      if (!Number.isInteger(raw.surface) || raw.surface < 0 || raw.surface > 0xffff) {
        return { ok: false, reason: 'keyframe.request.surface' };
      }
      return { ok: true, msg: { type: 'keyframe.request', surface: raw.surface } };
    case 'relayed': {
      const { from, seq, iv, box } = raw;
      if (!isPeer(from)) return { ok: false, reason: 'relayed.from' };
      if (!Number.isSafeInteger(seq) || seq < 1 || seq > MAX_SEQ) return { ok: false, reason: 'relayed.seq' };
      if (typeof iv !== 'string' || !IV_RE.test(iv)) return { ok: false, reason: 'relayed.iv' };
      if (typeof box !== 'string' || box.length > MAX_BOX || !BOX_RE.test(box)) {
        return { ok: false, reason: 'relayed.box' };
      }
      return { ok: true, msg: { type: 'relayed', from, seq, iv, box } };
    }
    case 'stats': {
      // §10: the viewer's own figures, which the relay shows and passes up as that viewer's `page`.
      const stats = parseViewerStats(raw);
      if (!stats.ok) return { ok: false, reason: `stats.${stats.reason}` };
      return { ok: true, msg: { type: 'stats', page: stats.page } };
    }
    case 'relay.viewers': {
      const { peers } = raw;
      if (!Array.isArray(peers) || peers.length > MAX_RELAYED || !peers.every(isPeer)) {
        return { ok: false, reason: 'relay.viewers.peers' };
      }
      return { ok: true, msg: { type: 'relay.viewers', peers: [...new Set(peers)] } };
    }
  }
  const detail = JSON.stringify(raw.type.slice(0, 40));
  if (needsRole(raw.type)) return { ok: false, reason: 'bare', detail };
  return { ok: false, reason: 'unknown type', detail };
}

/**
 * The `presence` a relay passes to its viewer `peer` (§7): upstream's, with `you` that viewer, `role` its entry in
 * `relayed` ("view" if none), and `relayed` narrowed to the peers that viewer reported (`reported`, iterable).
 */
export function presenceFor(presence, peer, reported) {
  const relayed = presence.relayed ?? {};
  const narrowed = [...reported].filter((p) => Object.hasOwn(relayed, p)).map((p) => [p, relayed[p]]);
  return {
    ...presence,
    you: peer,
    role: Object.hasOwn(relayed, peer) ? relayed[peer] : 'view',
    relayed: Object.fromEntries(narrowed),
  };
}

/**
 * The viewers a relay serves: its own (those whose channels are open) and the peers each of them reported in
 * `relay.viewers` (a chained relay's). Decides whose envelopes a viewer may pass on, and what to report upstream.
 */
export class ViewerBook {
  constructor({ log = () => {} } = {}) {
    this._log = log;
    this._reported = new Map(); // own viewer id -> Set of the peers it reported
    this._sent = ''; // the list last reported upstream, as a key ('' for nobody: what a new upstream assumes)
  }

  add(id) {
    if (!this._reported.has(id)) this._reported.set(id, new Set());
  }

  remove(id) {
    this._reported.delete(id);
  }

  has(id) {
    return this._reported.has(id);
  }

  /** What viewer `id` reported in its last `relay.viewers`. */
  reported(id) {
    return this._reported.get(id) ?? new Set();
  }

  setReported(id, peers) {
    if (this._reported.has(id)) this._reported.set(id, new Set(peers));
  }

  /** Whether viewer `id` may pass on an envelope from `from`: itself, or a peer it serves. */
  mayRelay(id, from) {
    const reported = this._reported.get(id);
    return reported !== undefined && (from === id || reported.has(from));
  }

  /** Everyone served through this relay, own viewers first, at most 1024. */
  list() {
    const all = new Set(this._reported.keys());
    for (const peers of this._reported.values()) for (const p of peers) all.add(p);
    const list = [...all];
    if (list.length > MAX_RELAYED) {
      this._log('relay.viewers:truncated', `serving more than ${MAX_RELAYED} viewers: reporting the first ones only`);
      return list.slice(0, MAX_RELAYED);
    }
    return list;
  }

  /** The `relay.viewers` message to send upstream if the list changed since the last one, else null. */
  takeReport() {
    const peers = this.list();
    const key = [...peers].sort().join('\n');
    if (key === this._sent) return null;
    this._sent = key;
    return { type: 'relay.viewers', peers };
  }

  /** A new upstream (or a report that could not be sent): the next `takeReport()` reports anyone there is. */
  forgetReport() {
    this._sent = '';
  }
}
