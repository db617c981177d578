// Connection statistics (docs/protocol.md §10): the nominated ICE candidate pair read from the browser's own
// `getStats()`, the page's pipeline figures over the last second, the `stats` message a page sends each second
// (and a relay's, with its viewers' in `downstream`), the bounds a relay applies to what its viewers send, and the
// last 60 s of each charted figure. Pure and DOM-free so `node --test` covers it.

/** Samples kept per charted figure: one a second, the last minute. */
export const HISTORY = 60;
/**
 * The figures the pages chart: what a chart is called, and the least top of its scale (so that a healthy 1 ms
 * round trip lies low on its chart rather than filling it).
 */
export const CHARTED = Object.freeze([
  Object.freeze({ key: 'rtt_ms', label: 'Round trip', unit: 'ms', minMax: 10 }),
  Object.freeze({ key: 'kbps', label: 'Video', unit: 'kbit/s', minMax: 100 }),
  Object.freeze({ key: 'fps_decoded', label: 'Decoded', unit: 'fps', minMax: 10 }),
  Object.freeze({ key: 'decode_ms', label: 'Decode time', unit: 'ms', minMax: 10 }),
]);

/** A relay sends at most this many `downstream` entries (its most viewers, §7). */
export const MAX_DOWNSTREAM = 64;
/** The longest `stats` text a relay reads from one of its viewers (a chained relay's, with its own downstream). */
export const MAX_STATS_TEXT = 64 * 1024;
/** A relay keeps its `stats` under this many characters (the desktop reads control messages of up to 64 KiB). */
export const STATS_BUDGET = 60 * 1024;
/** The longest candidate address kept (an IPv6 address is at most 45 characters; an mDNS name about 42). */
export const MAX_ADDRESS = 64;
const MAX_NUMBER = Number.MAX_SAFE_INTEGER;

export const PAIR_STATES = new Set([
  'frozen',
  'waiting',
  'in-progress',
  'inprogress', // Firefox before 2021
  'failed',
  'succeeded',
  'cancelled',
]);
export const CANDIDATE_TYPES = new Set(['host', 'srflx', 'prflx', 'relay']);
export const PROTOCOLS = new Set(['udp', 'tcp']);
/** The numeric fields of a `pair`, in the order they are sent. */
export const PAIR_NUMBERS = Object.freeze([
  'rtt_ms',
  'available_out_kbps',
  'bytes_sent',
  'bytes_received',
  'packets_sent',
  'packets_received',
  'requests_sent',
  'responses_received',
]);
/** The fields of a `pipeline` (all numbers or null), in the order they are sent. */
export const PIPELINE_FIELDS = Object.freeze([
  'fps_received',
  'fps_decoded',
  'fps_dropped',
  'decode_ms',
  'jitter_ms',
  'queue',
  'kbps',
  'keyframe_requests',
]);

/** What each `diagnosis` verdict is called on the pages. */
export const VERDICT_TEXT = Object.freeze({
  healthy: 'Healthy',
  network: 'Network path',
  viewer: 'This viewer’s machine',
  desktop: 'The desktop machine',
});
export const WAITING_TEXT = 'waiting for the desktop';
/** Behind a relay the desktop judges this page's connection to the relay from the figures the relay passes up, and
 * the relay passes the verdict back down (§10): until it arrives, what a page says. */
export const RELAYED_TEXT = 'waiting for the desktop, through the relay';
export const RELAYED_REASON = 'This page’s figures reach the desktop through its relay, and the verdict comes back the same way.';

const defaultNow = () => (globalThis.performance ? globalThis.performance.now() : Date.now());

/** A figure rounded to `digits` decimals, or null for anything that is not a finite number. */
export function round(value, digits = 1) {
  if (typeof value !== 'number' || !Number.isFinite(value)) return null;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** The median of `values` (numbers), or null when there are none. */
export function median(values) {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Frame-arrival jitter, ms: the mean deviation of the intervals between consecutive frames' arrivals from the
 * intervals between their captures, |(Rj − Ri) − (Sj − Si)| (RFC 3550's D, unsmoothed). `deviations` are those D
 * values; the desktop's clock offset cancels out, and so does a screen that changes irregularly (an idle
 * desktop sends nothing for a while: the arrivals are sparse, not late). Null with none.
 */
export function jitter(deviations) {
  if (deviations.length === 0) return null;
  return deviations.reduce((sum, d) => sum + Math.abs(d), 0) / deviations.length;
}

/**
 * The page's own figures, counted as things happen and taken once a second (`take()`): frames completed in
 * reassembly, decoded (out of the decoder and painted), dropped (reached the page but were never shown: lost in
 * reassembly, withheld until a keyframe, refused or discarded by the decoder), the median decode time (from
 * `decode()` to the decoder's output), frame-arrival jitter, the decoder queue (the most frames waiting during
 * the second), video kbit/s (every fragment's bytes) and keyframe requests sent. Rates are per second of the
 * window actually elapsed.
 */
export class PipelineMeter {
  constructor({ now = defaultNow } = {}) {
    this._now = now;
    this._last = new Map(); // surface -> {at, captureUs} of its last complete frame, for jitter
    this._start = now();
    this._clear();
  }

  _clear() {
    this._received = 0;
    this._decoded = 0;
    this._dropped = 0;
    this._bytes = 0;
    this._requests = 0;
    this._decodeMs = [];
    this._deviations = [];
    this._queue = null;
  }

  /** A new connection: frames of the old one are not compared with its. */
  reset() {
    this._last.clear();
    this._start = this._now();
    this._clear();
  }

  videoBytes(n) {
    this._bytes += n;
  }

  /** A frame of `surface` completed in reassembly (whether or not it goes on to the decoder). */
  frameComplete(surface, captureUs, at = this._now()) {
    this._received += 1;
    const last = this._last.get(surface);
    if (last !== undefined && captureUs > last.captureUs) {
      this._deviations.push(at - last.at - (captureUs - last.captureUs) / 1000);
      if (this._deviations.length > 1000) this._deviations.shift();
    }
    this._last.set(surface, { at, captureUs });
  }

  /** A frame came out of the decoder `ms` after it was handed to it (null: how long is not known). */
  frameDecoded(ms) {
    this._decoded += 1;
    if (typeof ms === 'number' && Number.isFinite(ms) && this._decodeMs.length < 1000) this._decodeMs.push(ms);
  }

  /** `n` frames that reached the page will never be shown. */
  frameDropped(n = 1) {
    this._dropped += n;
  }

  keyframeRequest() {
    this._requests += 1;
  }

  /** Frames waiting in the decoder(s) now: the window keeps the most. */
  sampleQueue(n) {
    if (typeof n === 'number' && Number.isFinite(n) && (this._queue === null || n > this._queue)) this._queue = n;
  }

  /** The figures since the last `take()` (`queueNow`: the decoder queue now), per second; then start a new window. */
  take(queueNow = null) {
    this.sampleQueue(queueNow);
    const now = this._now();
    const seconds = Math.max(0.001, (now - this._start) / 1000);
    const rate = (n) => round(n / seconds, 1);
    const figures = {
      fps_received: rate(this._received),
      fps_decoded: rate(this._decoded),
      fps_dropped: rate(this._dropped),
      decode_ms: round(median(this._decodeMs), 1),
      jitter_ms: round(jitter(this._deviations), 1),
      queue: this._queue,
      kbps: round((this._bytes * 8) / 1000 / seconds, 1),
      keyframe_requests: this._requests,
    };
    this._start = now;
    this._clear();
    return figures;
  }
}

// ---- the candidate pair, from getStats() ----

function entries(report) {
  if (report === null || report === undefined) return [];
  if (typeof report.values === 'function') return [...report.values()];
  if (Array.isArray(report)) return report;
  return Object.values(report);
}

const num = (v) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : null);
const text = (v, set) => (typeof v === 'string' && (set === undefined || set.has(v)) ? v : null);

function candidate(stats) {
  if (stats === undefined || stats === null) return null;
  const address = stats.address ?? stats.ip; // `ip` before Chromium 95
  return {
    type: text(stats.candidateType, CANDIDATE_TYPES),
    protocol: text(stats.protocol, PROTOCOLS),
    address: typeof address === 'string' ? address.slice(0, MAX_ADDRESS) : null,
    port: Number.isInteger(stats.port) && stats.port >= 0 && stats.port <= 0xffff ? stats.port : null,
  };
}

/**
 * The nominated `RTCIceCandidatePairStats` of a `getStats()` report (an RTCStatsReport, a Map, or an array of
 * stats objects), with its local and remote candidates, as §10's `pair`; null when there is none yet. The pair is
 * the one the transport names (`selectedCandidatePairId`); failing that, one marked `selected` (Firefox), or the
 * nominated, succeeded one that carried the most bytes.
 */
export function selectedPair(report) {
  const all = entries(report);
  const byId = new Map(all.filter((s) => s && typeof s.id === 'string').map((s) => [s.id, s]));
  let pair = null;
  for (const s of all) {
    if (s?.type === 'transport' && typeof s.selectedCandidatePairId === 'string') {
      const p = byId.get(s.selectedCandidatePairId);
      if (p?.type === 'candidate-pair') {
        pair = p;
        break;
      }
    }
  }
  if (pair === null) {
    const pairs = all.filter((s) => s?.type === 'candidate-pair');
    pair = pairs.find((p) => p.selected === true) ?? null;
    if (pair === null) {
      const bytes = (p) => (num(p.bytesSent) ?? 0) + (num(p.bytesReceived) ?? 0);
      const good = pairs.filter((p) => p.nominated === true && p.state === 'succeeded');
      pair = good.sort((a, b) => bytes(b) - bytes(a))[0] ?? null;
    }
  }
  if (pair === null) return null;
  const rtt = num(pair.currentRoundTripTime);
  const available = num(pair.availableOutgoingBitrate);
  return {
    state: text(pair.state, PAIR_STATES),
    local: candidate(byId.get(pair.localCandidateId)),
    remote: candidate(byId.get(pair.remoteCandidateId)),
    rtt_ms: rtt === null ? null : round(rtt * 1000, 1),
    available_out_kbps: available === null ? null : round(available / 1000, 1),
    bytes_sent: num(pair.bytesSent),
    bytes_received: num(pair.bytesReceived),
    packets_sent: num(pair.packetsSent),
    packets_received: num(pair.packetsReceived),
    requests_sent: num(pair.requestsSent),
    responses_received: num(pair.responsesReceived),
  };
}

// ---- the `stats` message, and the bounds on one received ----

/**
 * The `stats` message (§10): `pair` (or null), `pipeline`, and for a relay `downstream` — at most
 * `MAX_DOWNSTREAM` entries, and kept under `STATS_BUDGET` characters by leaving out the viewers' own `page`
 * figures (the last entries' first), then entries, should it come to that.
 */
export function statsMessage({ pair = null, pipeline, downstream }) {
  const msg = { type: 'stats', pair: pair === null ? null : cleanPair(pair), pipeline: cleanPipeline(pipeline) };
  if (downstream === undefined) return msg;
  const list = downstream.slice(0, MAX_DOWNSTREAM).map(cleanDownstream);
  msg.downstream = list;
  let size = JSON.stringify(msg).length;
  for (let i = list.length - 1; i >= 0 && size > STATS_BUDGET; i--) {
    if (list[i].page === undefined) continue;
    size -= JSON.stringify(list[i].page).length + ',"page":'.length;
    delete list[i].page;
  }
  while (list.length > 0 && JSON.stringify(msg).length > STATS_BUDGET) list.pop();
  return msg;
}

function cleanCandidate(c) {
  if (c === null || typeof c !== 'object') return null;
  return {
    type: text(c.type, CANDIDATE_TYPES),
    protocol: text(c.protocol, PROTOCOLS),
    address: typeof c.address === 'string' ? c.address.slice(0, MAX_ADDRESS) : null,
    port: Number.isInteger(c.port) && c.port >= 0 && c.port <= 0xffff ? c.port : null,
  };
}

const figure = (v) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= MAX_NUMBER ? v : null);

function cleanPair(p) {
  const out = { state: text(p.state, PAIR_STATES), local: cleanCandidate(p.local), remote: cleanCandidate(p.remote) };
  for (const k of PAIR_NUMBERS) out[k] = figure(p[k]);
  return out;
}

function cleanPipeline(p) {
  const out = {};
  for (const k of PIPELINE_FIELDS) out[k] = figure(p?.[k]);
  return out;
}

function cleanDownstream(d) {
  const out = {
    peer: String(d.peer).slice(0, 256),
    pair: d.pair === null || d.pair === undefined ? null : cleanPair(d.pair),
    bytes: figure(d.bytes),
    frames_forwarded: figure(d.frames_forwarded),
    frames_skipped: figure(d.frames_skipped),
  };
  if (d.page !== undefined && d.page !== null) {
    out.page = { pair: d.page.pair === null ? null : cleanPair(d.page.pair), pipeline: cleanPipeline(d.page.pipeline) };
  }
  return out;
}

/** A figure as received: a finite number in range, or null; anything else is no figure (undefined). */
function parseFigure(v) {
  if (v === null || v === undefined) return null;
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= MAX_NUMBER ? v : undefined;
}

function parseText(v, set) {
  if (v === null || v === undefined) return null;
  return typeof v === 'string' && set.has(v) ? v : undefined;
}

function parseCandidate(c) {
  if (c === null || c === undefined) return null;
  if (typeof c !== 'object' || Array.isArray(c)) return undefined;
  const type = parseText(c.type, CANDIDATE_TYPES);
  const protocol = parseText(c.protocol, PROTOCOLS);
  const address = c.address === null || c.address === undefined ? null : c.address;
  const port = c.port === null || c.port === undefined ? null : c.port;
  if (type === undefined || protocol === undefined) return undefined;
  if (address !== null && (typeof address !== 'string' || address.length > MAX_ADDRESS)) return undefined;
  if (port !== null && !(Number.isInteger(port) && port >= 0 && port <= 0xffff)) return undefined;
  return { type, protocol, address, port };
}

/** A received `pair`: `{ok: true, pair}` (pair null when none) or `{ok: false, reason}`. Absent figures are null. */
export function parsePair(raw) {
  if (raw === null || raw === undefined) return { ok: true, pair: null };
  if (typeof raw !== 'object' || Array.isArray(raw)) return { ok: false, reason: 'pair' };
  const state = parseText(raw.state, PAIR_STATES);
  if (state === undefined) return { ok: false, reason: 'pair.state' };
  const local = parseCandidate(raw.local);
  if (local === undefined) return { ok: false, reason: 'pair.local' };
  const remote = parseCandidate(raw.remote);
  if (remote === undefined) return { ok: false, reason: 'pair.remote' };
  const pair = { state, local, remote };
  for (const k of PAIR_NUMBERS) {
    const v = parseFigure(raw[k]);
    if (v === undefined) return { ok: false, reason: `pair.${k}` };
    pair[k] = v;
  }
  return { ok: true, pair };
}

/**
 * A received `pipeline`: `{ok: true, pipeline}` or `{ok: false, reason}`. Absent figures are null; so is a
 * pipeline sent as null (`impromptu relay` decodes nothing), though not one left out.
 */
export function parsePipeline(raw) {
  if (raw === null) return { ok: true, pipeline: Object.fromEntries(PIPELINE_FIELDS.map((k) => [k, null])) };
  if (typeof raw !== 'object' || Array.isArray(raw)) return { ok: false, reason: 'pipeline' };
  const pipeline = {};
  for (const k of PIPELINE_FIELDS) {
    const v = parseFigure(raw[k]);
    if (v === undefined) return { ok: false, reason: `pipeline.${k}` };
    pipeline[k] = v;
  }
  return { ok: true, pipeline };
}

/**
 * A `stats` message a relay got from one of its viewers (already JSON-parsed, `raw.type === 'stats'`): `{ok:
 * true, page: {pair, pipeline}}` with the known fields only — what the relay shows and passes up as that viewer's
 * `page` — or `{ok: false, reason}`. A chained relay's own `downstream` stays behind: each relay reports the hops
 * it serves itself.
 */
export function parseViewerStats(raw) {
  const pair = parsePair(raw.pair);
  if (!pair.ok) return pair;
  const pipeline = parsePipeline(raw.pipeline);
  if (!pipeline.ok) return pipeline;
  return { ok: true, page: { pair: pair.pair, pipeline: pipeline.pipeline } };
}

// ---- history, for the charts ----

/** The last `size` values pushed (numbers or null), oldest first. */
export class Ring {
  constructor(size = HISTORY) {
    this.size = size;
    this._values = new Array(size);
    this._next = 0;
    this.length = 0;
  }

  push(value) {
    this._values[this._next] = typeof value === 'number' && Number.isFinite(value) ? value : null;
    this._next = (this._next + 1) % this.size;
    this.length = Math.min(this.size, this.length + 1);
  }

  /** The values, oldest first. */
  values() {
    const out = [];
    const first = this._next - this.length + this.size;
    for (let i = 0; i < this.length; i++) out.push(this._values[(first + i) % this.size]);
    return out;
  }

  clear() {
    this._next = 0;
    this.length = 0;
  }
}

/** One ring per charted figure (`keys`), pushed together once a second. */
export class StatsHistory {
  constructor(keys = CHARTED.map((c) => c.key), size = HISTORY) {
    this._rings = new Map(keys.map((k) => [k, new Ring(size)]));
  }

  /** One second's sample: `{key: value}`; a key missing from it records a gap (null). */
  push(sample) {
    for (const [k, ring] of this._rings) ring.push(sample[k]);
  }

  series(key) {
    return this._rings.get(key)?.values() ?? [];
  }

  /** `{key: [values, oldest first]}`, for the test hooks. */
  snapshot() {
    return Object.fromEntries([...this._rings].map(([k, ring]) => [k, ring.values()]));
  }

  clear() {
    for (const ring of this._rings.values()) ring.clear();
  }
}

// ---- what the panel shows ----

/**
 * The verdict's words and reasons, from the last `diagnosis` (or null before any); `viaRelay`: the page is
 * connected through a relay, which sends none.
 */
export function verdictView(diagnosis, { viaRelay = false } = {}) {
  if (diagnosis === null || diagnosis === undefined) {
    if (viaRelay) return { verdict: null, text: RELAYED_TEXT, reasons: [RELAYED_REASON] };
    return { verdict: null, text: WAITING_TEXT, reasons: [] };
  }
  return { verdict: diagnosis.verdict, text: VERDICT_TEXT[diagnosis.verdict], reasons: [...diagnosis.reasons] };
}

/** A figure for people: `—` when unknown, else rounded, with its unit. */
export function formatFigure(value, unit = '', digits = 1) {
  if (value === null || value === undefined || !Number.isFinite(value)) return '—';
  const shown = Number.isInteger(value) ? String(value) : value.toFixed(digits);
  return unit ? `${shown} ${unit}` : shown;
}

/** A count of bytes for people. */
export function formatBytes(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  if (n < 1000) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(1)} kB`;
  if (n < 1e9) return `${(n / 1e6).toFixed(1)} MB`;
  return `${(n / 1e9).toFixed(2)} GB`;
}

/** A candidate for people: "host udp 127.0.0.1:40000". */
export function formatCandidate(c) {
  if (c === null || c === undefined) return '—';
  const where = c.address === null ? '' : c.port === null ? c.address : `${c.address}:${c.port}`;
  return [c.type, c.protocol, where].filter((s) => s !== null && s !== '').join(' ') || '—';
}

/** The candidate pair's rows for the panel: `[label, text]`. */
export function pairRows(pair) {
  if (pair === null || pair === undefined) return [['Candidate pair', 'none yet']];
  const both = (a, b, f) => (a === null && b === null ? '—' : `${f(a)} / ${f(b)}`);
  return [
    ['State', pair.state ?? '—'],
    ['Local', formatCandidate(pair.local)],
    ['Remote', formatCandidate(pair.remote)],
    ['Round trip', formatFigure(pair.rtt_ms, 'ms')],
    ['Available out', formatFigure(pair.available_out_kbps, 'kbit/s')],
    ['Bytes sent / received', both(pair.bytes_sent, pair.bytes_received, formatBytes)],
    ['Packets sent / received', both(pair.packets_sent, pair.packets_received, (v) => formatFigure(v))],
    ['Checks sent / answered', both(pair.requests_sent, pair.responses_received, (v) => formatFigure(v))],
  ];
}

/** The pipeline's rows for the panel: `[label, text]`. */
export function pipelineRows(p) {
  if (p === null || p === undefined) return [['Pipeline', 'nothing yet']];
  return [
    ['Frames received', formatFigure(p.fps_received, '/s')],
    ['Frames decoded', formatFigure(p.fps_decoded, '/s')],
    ['Frames dropped', formatFigure(p.fps_dropped, '/s')],
    ['Decode time', formatFigure(p.decode_ms, 'ms')],
    ['Arrival jitter', formatFigure(p.jitter_ms, 'ms')],
    ['Decoder queue', formatFigure(p.queue)],
    ['Video', formatFigure(p.kbps, 'kbit/s')],
    ['Keyframe requests', formatFigure(p.keyframe_requests, '/s')],
  ];
}
