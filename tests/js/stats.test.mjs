// node --test tests/js/ — connection statistics (docs/protocol.md §10): the pipeline's figures per second, the
// nominated candidate pair out of a getStats() report, the `stats` message and its bounds, what a relay accepts
// from its viewers, the charts' history and the `diagnosis` a page accepts.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { niceCeil, sparkline } from '../../impromptu/web/lib/chart.js';
import { CanvasDecoder, MAX_QUEUE } from '../../impromptu/web/lib/decoder.js';
import {
  MAX_FIGURES,
  MAX_REASONS,
  Reassembler,
  fragmentFrame,
  parseControl,
} from '../../impromptu/web/lib/protocol.js';
import { MAX_DOWNSTREAM_TEXT, parseDownstream } from '../../impromptu/web/lib/relay.js';
import {
  HISTORY,
  MAX_DOWNSTREAM,
  PIPELINE_FIELDS,
  PipelineMeter,
  Ring,
  STATS_BUDGET,
  StatsHistory,
  VERDICT_TEXT,
  WAITING_TEXT,
  formatCandidate,
  jitter,
  median,
  pairRows,
  parseViewerStats,
  pipelineRows,
  selectedPair,
  statsMessage,
  verdictView,
} from '../../impromptu/web/lib/stats.js';
import { FakeTimers } from './fake-timers.mjs';

// ---- figures ----

test('median: odd, even, none; the input is left alone', () => {
  const values = [5, 1, 3];
  assert.equal(median(values), 3);
  assert.deepEqual(values, [5, 1, 3]);
  assert.equal(median([4, 1, 2, 3]), 2.5);
  assert.equal(median([7]), 7);
  assert.equal(median([]), null);
});

test('jitter: the mean deviation of arrival intervals from capture intervals', () => {
  assert.equal(jitter([]), null);
  assert.equal(jitter([0, 0, 0]), 0);
  assert.equal(jitter([2, -4, 6]), 4);
});

const clocks = new WeakMap();
const clockOf = (m) => clocks.get(m);

function meter() {
  const clock = { t: 0 };
  const m = new PipelineMeter({ now: () => clock.t });
  clocks.set(m, clock);
  return { m, clock };
}

test('PipelineMeter: frames, bytes and requests per second of the window', () => {
  const { m, clock } = meter();
  for (let i = 0; i < 30; i++) {
    m.frameComplete(0, i * 33_333, i * 33.333);
    m.frameDecoded(i % 2 === 0 ? 4 : 6);
  }
  m.frameDropped(2);
  m.videoBytes(125_000); // 1 Mbit
  m.keyframeRequest();
  m.sampleQueue(2);
  clock.t = 1000;
  const f = m.take(1);
  assert.deepEqual(Object.keys(f), PIPELINE_FIELDS);
  assert.equal(f.fps_received, 30);
  assert.equal(f.fps_decoded, 30);
  assert.equal(f.fps_dropped, 2);
  assert.equal(f.decode_ms, 5);
  assert.equal(f.jitter_ms, 0, 'frames arriving as they were captured: no jitter');
  assert.equal(f.queue, 2, 'the most frames waiting during the second');
  assert.equal(f.kbps, 1000);
  assert.equal(f.keyframe_requests, 1);

  // The next window starts empty; rates are per second of the time that actually passed.
  clock.t = 3000;
  m.videoBytes(125_000);
  const g = m.take(0);
  assert.equal(g.kbps, 500);
  assert.equal(g.fps_received, 0);
  assert.equal(g.decode_ms, null, 'nothing decoded: no decode time');
  assert.equal(g.jitter_ms, null);
  assert.equal(g.queue, 0);
});

test('PipelineMeter: jitter comes from arrivals that stray from the capture rhythm, per surface', () => {
  const { m, clock } = meter();
  // Captured every 40 ms, arriving 0, 50, 80, 130 ms later (intervals 50, 30, 50): |10|, |−10|, |10| → 10.
  const arrivals = [0, 50, 80, 130];
  arrivals.forEach((at, i) => m.frameComplete(1, 1_000_000 + i * 40_000, at));
  // A second surface whose frames interleave: compared with its own frames only.
  m.frameComplete(2, 5_000_000, 10);
  m.frameComplete(2, 5_100_000, 110);
  clock.t = 1000;
  assert.equal(m.take().jitter_ms, (10 + 10 + 10 + 0) / 4);
  // The clock offset between desktop and page does not matter, and the comparison spans windows.
  m.frameComplete(1, 1_000_000 + 4 * 40_000, 170);
  clock.t = 2000;
  assert.equal(m.take().jitter_ms, 0);
  // A new connection compares nothing with the old one's frames.
  m.reset();
  m.frameComplete(1, 9_000_000, 2500);
  clock.t = 3000;
  assert.equal(m.take().jitter_ms, null);
});

test('PipelineMeter is told of frames by a Reassembler: complete, withheld until a keyframe, lost', () => {
  const { m } = meter();
  const clock = { t: 0 };
  const r = new Reassembler({
    now: () => clock.t,
    onComplete: (f) => {
      m.frameComplete(0, f.captureUs, clock.t);
      if (f.withheld) m.frameDropped(1);
    },
    onLost: (n) => m.frameDropped(n),
  });
  const frame = (seq, keyframe) => fragmentFrame({ seq, keyframe, captureUs: seq * 1000 }, new Uint8Array(20_000));
  for (const msg of frame(1, true)) r.push(msg);
  const [first] = frame(2, false); // half of frame 2, then frame 3 completes: 2 is lost
  r.push(first);
  for (const msg of frame(3, false)) r.push(msg); // lost 2 → withheld until a keyframe
  assert.deepEqual([r.delivered, r.lost, r.skipped], [1, 1, 1]);
  clockOf(m).t = 1000;
  const f = m.take();
  assert.equal(f.fps_received, 2, 'frames 1 and 3 completed');
  assert.equal(f.fps_dropped, 2, 'frame 2 lost incomplete, frame 3 withheld until a keyframe');
});

// ---- the decoder's figures, and the slow-decoder test hook ----

class FakeVideoDecoder {
  static all = [];
  constructor({ output, error }) {
    this.output = output;
    this.error = error;
    this.queue = [];
    this.state = 'unconfigured';
    FakeVideoDecoder.all.push(this);
  }
  get decodeQueueSize() {
    return this.queue.length;
  }
  configure() {
    this.state = 'configured';
  }
  decode(chunk) {
    this.queue.push(chunk);
  }
  /** Output the oldest `n` chunks (or drop the first `skip` of them silently). */
  flush(n = this.queue.length, skip = 0) {
    const out = this.queue.splice(0, n);
    for (const chunk of out.slice(skip)) this.output({ timestamp: chunk.timestamp, close() {} });
  }
  close() {
    this.state = 'closed';
  }
}

class FakeChunk {
  constructor({ type, timestamp, data }) {
    Object.assign(this, { type, timestamp, data });
  }
}

function fakeCanvas() {
  return { width: 0, height: 0, getContext: () => ({ drawImage() {} }) };
}

function decoderHarness() {
  FakeVideoDecoder.all = [];
  const clock = { t: 0 };
  const decoded = [];
  let discarded = 0;
  const d = new CanvasDecoder(fakeCanvas(), {
    now: () => clock.t,
    onDecoded: (ms) => decoded.push(ms),
    onDiscard: (n) => (discarded += n),
    VideoDecoderImpl: FakeVideoDecoder,
    EncodedVideoChunkImpl: FakeChunk,
  });
  d.configure({ codec: 'vp8', width: 64, height: 48 });
  return { d, clock, decoded, discarded: () => discarded, vd: () => FakeVideoDecoder.all.at(-1) };
}

const frameAt = (n, keyframe = false) => ({ keyframe, captureUs: n * 1000, data: new Uint8Array(4) });

test('CanvasDecoder: the time from decode() to the picture, and frames it throws away', () => {
  const h = decoderHarness();
  assert.equal(h.d.decode(frameAt(1, true)), true);
  h.clock.t = 7;
  assert.equal(h.d.decode(frameAt(2)), true);
  assert.equal(h.d.queueSize, 2);
  h.clock.t = 12;
  h.vd().flush();
  assert.deepEqual(h.decoded, [12, 5]);
  // A decoder that drops a frame silently: the next output accounts for it.
  h.d.decode(frameAt(3));
  h.d.decode(frameAt(4));
  h.vd().flush(2, 1);
  assert.equal(h.discarded(), 1);
  // Behind: deltas are refused (and counted); a keyframe still goes in.
  for (let i = 0; i <= MAX_QUEUE; i++) h.d.decode(frameAt(10 + i));
  assert.equal(h.d.decode(frameAt(30)), false);
  assert.equal(h.discarded(), 2);
  assert.equal(h.d.decode(frameAt(31, true)), true);
  // A reset throws away what the decoder still holds.
  const held = h.d.queueSize;
  h.d.configure({ codec: 'vp8', width: 64, height: 48 });
  assert.equal(h.discarded(), 2 + held);
  assert.equal(h.d.queueSize, 0);
});

test('CanvasDecoder.slowMs holds frames back, one per interval: decode time and queue grow for real', () => {
  const timers = new FakeTimers();
  timers.install();
  try {
    const h = decoderHarness();
    h.d.slowMs = 100;
    h.clock.t = 0;
    h.d.decode(frameAt(1, true));
    h.d.decode(frameAt(2));
    h.d.decode(frameAt(3));
    assert.equal(h.d.queueSize, 3, 'held frames count as waiting');
    assert.equal(h.vd().queue.length, 0);
    timers.tick(100);
    assert.equal(h.vd().queue.length, 1);
    timers.tick(200);
    assert.equal(h.vd().queue.length, 3);
    h.clock.t = 300;
    h.vd().flush();
    assert.deepEqual(h.decoded, [300, 300, 300], 'measured from decode(), the holding included');
    // Back to full speed: anything held goes at once.
    h.d.decode(frameAt(4));
    h.d.slowMs = 0;
    assert.equal(h.vd().queue.length, 1);
  } finally {
    timers.uninstall();
  }
});

// ---- the candidate pair ----

/** A report as Chromium makes it: a Map of stats objects by id. */
function chromiumReport({ selected = 'CP1', extra = [] } = {}) {
  const objects = [
    { id: 'T01', type: 'transport', selectedCandidatePairId: selected, dtlsState: 'connected' },
    {
      id: 'CP1',
      type: 'candidate-pair',
      state: 'succeeded',
      nominated: true,
      localCandidateId: 'IL1',
      remoteCandidateId: 'IR1',
      currentRoundTripTime: 0.0123,
      availableOutgoingBitrate: 2_500_000,
      bytesSent: 1000,
      bytesReceived: 2_000_000,
      packetsSent: 20,
      packetsReceived: 1800,
      requestsSent: 5,
      responsesReceived: 5,
    },
    {
      id: 'CP2',
      type: 'candidate-pair',
      state: 'failed',
      nominated: false,
      localCandidateId: 'IL1',
      remoteCandidateId: 'IR2',
      bytesSent: 0,
      bytesReceived: 0,
    },
    { id: 'IL1', type: 'local-candidate', candidateType: 'host', protocol: 'udp', address: '127.0.0.1', port: 40000 },
    { id: 'IR1', type: 'remote-candidate', candidateType: 'host', protocol: 'udp', address: '127.0.0.1', port: 50000 },
    { id: 'IR2', type: 'remote-candidate', candidateType: 'srflx', protocol: 'udp', address: '192.0.2.1', port: 9 },
    { id: 'D1', type: 'data-channel', label: 'video' },
    ...extra,
  ];
  return new Map(objects.map((o) => [o.id, o]));
}

test('selectedPair: the pair the transport names, with its candidates, in §10 units', () => {
  assert.deepEqual(selectedPair(chromiumReport()), {
    state: 'succeeded',
    local: { type: 'host', protocol: 'udp', address: '127.0.0.1', port: 40000 },
    remote: { type: 'host', protocol: 'udp', address: '127.0.0.1', port: 50000 },
    rtt_ms: 12.3,
    available_out_kbps: 2500,
    bytes_sent: 1000,
    bytes_received: 2_000_000,
    packets_sent: 20,
    packets_received: 1800,
    requests_sent: 5,
    responses_received: 5,
  });
});

test('selectedPair: without the transport, the nominated succeeded pair (or Firefox’s selected); else null', () => {
  const report = chromiumReport();
  report.delete('T01');
  assert.equal(selectedPair(report).remote.port, 50000);
  // Firefox marks the pair itself; its reports are maplike too (here: an array works as well).
  const firefox = [...chromiumReport().values()].filter((s) => s.type !== 'transport');
  firefox.find((s) => s.id === 'CP2').selected = true;
  assert.equal(selectedPair(firefox).remote.type, 'srflx');
  // Of several nominated and succeeded pairs, the busiest.
  const two = chromiumReport({ extra: [] });
  two.delete('T01');
  Object.assign(two.get('CP2'), { state: 'succeeded', nominated: true, bytesReceived: 9e9 });
  assert.equal(selectedPair(two).remote.type, 'srflx');
  // Before any pair succeeded, and for no report at all.
  const early = chromiumReport({ selected: 'nope' });
  early.get('CP1').state = 'in-progress';
  assert.equal(selectedPair(early), null);
  assert.equal(selectedPair(null), null);
  assert.equal(selectedPair(new Map()), null);
});

test('selectedPair: figures not known yet are null; older field names work; odd values are not passed on', () => {
  const report = chromiumReport();
  const pair = report.get('CP1');
  delete pair.currentRoundTripTime;
  delete pair.availableOutgoingBitrate;
  pair.bytesSent = -1;
  pair.packetsSent = Number.NaN;
  const local = report.get('IL1');
  delete local.address;
  local.ip = '10.0.0.1'; // before Chromium 95
  report.get('IR1').address = 'x'.repeat(500);
  report.get('IR1').candidateType = 'weird';
  const p = selectedPair(report);
  assert.equal(p.rtt_ms, null);
  assert.equal(p.available_out_kbps, null);
  assert.equal(p.bytes_sent, null);
  assert.equal(p.packets_sent, null);
  assert.equal(p.local.address, '10.0.0.1');
  assert.equal(p.remote.address.length, 64);
  assert.equal(p.remote.type, null);
});

// ---- the `stats` message ----

const PIPELINE = {
  fps_received: 30,
  fps_decoded: 29,
  fps_dropped: 1,
  decode_ms: 3.5,
  jitter_ms: 1.2,
  queue: 0,
  kbps: 800,
  keyframe_requests: 0,
};

test('statsMessage: snake_case fields, numbers or null, nothing else', () => {
  const pair = selectedPair(chromiumReport());
  const msg = statsMessage({ pair: { ...pair, extra: 1 }, pipeline: { ...PIPELINE, decode_ms: Infinity, x: 2 } });
  assert.equal(msg.type, 'stats');
  assert.deepEqual(Object.keys(msg), ['type', 'pair', 'pipeline']);
  assert.equal(msg.pair.extra, undefined);
  assert.equal(msg.pipeline.decode_ms, null);
  assert.equal(msg.pipeline.x, undefined);
  assert.deepEqual(Object.keys(msg.pipeline), PIPELINE_FIELDS);
  assert.deepEqual(statsMessage({ pair: null, pipeline: {} }).pipeline.kbps, null);
  // What a page sends, a relay accepts as it is.
  const back = parseDownstream(JSON.stringify(msg));
  assert.equal(back.ok, true);
  assert.deepEqual(back.msg.page, { pair: msg.pair, pipeline: msg.pipeline });
});

test('statsMessage with downstream: a relay’s entries, bounded in number and in size', () => {
  const pair = selectedPair(chromiumReport());
  const page = { pair, pipeline: PIPELINE };
  const entry = (i) => ({ peer: `peer-${i}`, pair, bytes: 1000, frames_forwarded: 30, frames_skipped: 0, page });
  const small = statsMessage({ pair, pipeline: PIPELINE, downstream: [entry(1)] });
  const fields = ['peer', 'pair', 'bytes', 'frames_forwarded', 'frames_skipped', 'page'];
  assert.deepEqual(Object.keys(small.downstream[0]), fields);
  assert.deepEqual(small.downstream[0].page, page);
  const many = statsMessage({ pair, pipeline: PIPELINE, downstream: Array.from({ length: 100 }, (_, i) => entry(i)) });
  assert.equal(many.downstream.length <= MAX_DOWNSTREAM, true);
  assert.equal(JSON.stringify(many).length <= STATS_BUDGET, true);
  // Long peer ids: the viewers' pages go first, then entries.
  const long = Array.from({ length: 64 }, (_, i) => ({ ...entry(i), peer: `${i}`.padEnd(256, 'x') }));
  const bounded = statsMessage({ pair, pipeline: PIPELINE, downstream: long });
  assert.equal(JSON.stringify(bounded).length <= STATS_BUDGET, true);
  assert.equal(bounded.downstream.length, 64, 'the entries themselves fit once pages are left out');
  assert.equal(bounded.downstream.at(-1).page, undefined);
  assert.deepEqual(bounded.downstream[0].page, page);
});

test('parseViewerStats / parseDownstream: a viewer’s stats are checked field by field', () => {
  const pair = selectedPair(chromiumReport());
  const ok = (raw) => parseViewerStats({ type: 'stats', ...raw });
  assert.deepEqual(ok({ pair: null, pipeline: {} }), {
    ok: true,
    page: { pair: null, pipeline: Object.fromEntries(PIPELINE_FIELDS.map((k) => [k, null])) },
  });
  assert.equal(ok({ pair, pipeline: PIPELINE }).ok, true);
  assert.equal(ok({ pair, pipeline: { ...PIPELINE, kbps: 'fast' } }).reason, 'pipeline.kbps');
  assert.equal(ok({ pair, pipeline: { ...PIPELINE, queue: -1 } }).reason, 'pipeline.queue');
  assert.equal(ok({ pair, pipeline: { ...PIPELINE, queue: 2 ** 60 } }).reason, 'pipeline.queue');
  assert.equal(ok({ pair: { ...pair, rtt_ms: '1' }, pipeline: PIPELINE }).reason, 'pair.rtt_ms');
  assert.equal(ok({ pair: { ...pair, state: 'happy' }, pipeline: PIPELINE }).reason, 'pair.state');
  const badPort = { ...pair, local: { ...pair.local, port: 70000 } };
  assert.equal(ok({ pair: badPort, pipeline: PIPELINE }).reason, 'pair.local');
  const longAddress = { ...pair, remote: { ...pair.remote, address: 'a'.repeat(65) } };
  assert.equal(ok({ pair: longAddress, pipeline: PIPELINE }).reason, 'pair.remote');
  assert.equal(ok({ pair: [], pipeline: PIPELINE }).reason, 'pair');
  assert.equal(ok({ pair }).reason, 'pipeline');
  assert.equal(ok({ pair, pipeline: 3 }).reason, 'pipeline');
  // `impromptu relay` decodes nothing: its pipeline is null.
  assert.equal(ok({ pair: null, pipeline: null }).page.pipeline.kbps, null);
  // Unknown fields stay behind, a chained relay's downstream included.
  const parsed = ok({ pair: { ...pair, x: 1 }, pipeline: { ...PIPELINE, y: 2 }, downstream: [{ peer: 'a' }] });
  assert.deepEqual(Object.keys(parsed.page), ['pair', 'pipeline']);
  assert.equal(parsed.page.pair.x, undefined);
  assert.equal(parsed.page.pipeline.y, undefined);
  // Through the relay's parser: bounded in size (a chained relay's may be long, not unbounded).
  const big = JSON.stringify({ type: 'stats', pair, pipeline: PIPELINE, pad: 'x'.repeat(MAX_DOWNSTREAM_TEXT) });
  assert.equal(parseDownstream(big).ok, true, 'a chained relay’s stats may be longer than other messages');
  const huge = JSON.stringify({ type: 'stats', pair, pipeline: PIPELINE, pad: 'x'.repeat(70 * 1024) });
  assert.deepEqual(parseDownstream(huge), { ok: false, reason: 'too long' });
  assert.equal(parseDownstream(JSON.stringify({ type: 'stats', pair: 1, pipeline: {} })).reason, 'stats.pair');
  // The type is no way around the size bound.
  const proto = JSON.stringify({ type: 'constructor', pad: 'x'.repeat(MAX_DOWNSTREAM_TEXT) });
  assert.deepEqual(parseDownstream(proto), { ok: false, reason: 'too long' });
});

// ---- history ----

test('Ring keeps the last values, oldest first; non-numbers are gaps', () => {
  const r = new Ring(3);
  assert.deepEqual(r.values(), []);
  r.push(1);
  r.push(2);
  assert.deepEqual(r.values(), [1, 2]);
  r.push(3);
  r.push(4);
  r.push('x');
  assert.deepEqual(r.values(), [3, 4, null]);
  assert.equal(r.length, 3);
  r.clear();
  assert.deepEqual(r.values(), []);
});

test('StatsHistory: 60 samples per charted figure', () => {
  const h = new StatsHistory();
  for (let i = 0; i < 75; i++) h.push({ rtt_ms: i, kbps: i * 10, fps_decoded: 30, other: 1 });
  const snap = h.snapshot();
  assert.deepEqual(Object.keys(snap), ['rtt_ms', 'kbps', 'fps_decoded', 'decode_ms']);
  assert.equal(snap.rtt_ms.length, HISTORY);
  assert.equal(snap.rtt_ms[0], 15);
  assert.equal(snap.rtt_ms.at(-1), 74);
  assert.equal(snap.decode_ms.every((v) => v === null), true, 'missing from every sample: all gaps');
  assert.deepEqual(h.series('nope'), []);
});

test('sparkline: newest at the right, gaps kept, a nice scale from zero', () => {
  const { max, points } = sparkline([0, 5, null, 10], 60, 20, { slots: 4, pad: 0 });
  assert.equal(max, 10);
  assert.deepEqual(points, [[0, 20], [19.67, 10], null, [59, 0]]);
  // Fewer values than slots: they end at the right edge.
  const few = sparkline([1], 60, 20, { slots: 60, pad: 0 });
  assert.deepEqual(few.points, [[59, 0]]);
  assert.equal(sparkline([], 60, 20).max, 1);
  assert.equal(sparkline([0.2], 60, 20).max, 1, 'small values do not fill the chart');
  assert.deepEqual([niceCeil(3), niceCeil(7), niceCeil(12), niceCeil(100), niceCeil(0.03)], [5, 10, 20, 100, 0.05]);
});

// ---- the verdict ----

test('parseControl: diagnosis', () => {
  const reasons = ['round trip 300 ms ≥ 250 ms'];
  const d = { type: 'diagnosis', verdict: 'network', reasons, figures: { rtt_ms: 300 } };
  assert.deepEqual(parseControl(JSON.stringify(d)), {
    ok: true,
    msg: { type: 'diagnosis', verdict: 'network', reasons: ['round trip 300 ms ≥ 250 ms'], figures: { rtt_ms: 300 } },
  });
  for (const verdict of ['healthy', 'network', 'viewer', 'desktop']) {
    assert.equal(parseControl(JSON.stringify({ ...d, verdict })).ok, true);
  }
  const bad = (raw) => parseControl(JSON.stringify({ ...d, ...raw })).reason;
  assert.equal(bad({ verdict: 'fine' }), 'diagnosis.verdict');
  assert.equal(bad({ verdict: undefined }), 'diagnosis.verdict');
  assert.equal(bad({ reasons: 'slow' }), 'diagnosis.reasons');
  assert.equal(bad({ reasons: [1] }), 'diagnosis.reasons');
  assert.equal(bad({ reasons: ['x'.repeat(201)] }), 'diagnosis.reasons');
  assert.equal(bad({ reasons: Array(MAX_REASONS + 1).fill('r') }), 'diagnosis.reasons');
  assert.equal(bad({ figures: 3 }), 'diagnosis.figures');
  assert.deepEqual(parseControl(JSON.stringify({ ...d, figures: undefined })).msg.figures, {});
});

test('parseControl: a diagnosis’s figures are flattened and bounded for showing', () => {
  const figures = {
    desktop: { surfaces: [{ capture_ms: 3, encode_ms: 4.5 }], fps: 30 },
    viewer: { rtt_ms: null, ok: true, note: 'x'.repeat(300), deep: { a: { b: { c: { d: 1 } } } } },
  };
  const msg = parseControl(JSON.stringify({ type: 'diagnosis', verdict: 'healthy', reasons: [], figures })).msg;
  assert.deepEqual(msg.figures, {
    'desktop.surfaces.0.capture_ms': 3,
    'desktop.surfaces.0.encode_ms': 4.5,
    'desktop.fps': 30,
    'viewer.rtt_ms': null,
    'viewer.ok': true,
  });
  const wide = Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`f${i}`, i]));
  const many = parseControl(JSON.stringify({ type: 'diagnosis', verdict: 'healthy', reasons: [], figures: wide }));
  assert.equal(Object.keys(many.msg.figures).length, MAX_FIGURES);
  const proto = JSON.parse('{"__proto__": {"x": 1}}');
  const safe = parseControl(JSON.stringify({ type: 'diagnosis', verdict: 'healthy', reasons: [], figures: proto }));
  assert.equal(safe.msg.figures['__proto__.x'], 1);
  assert.equal({}.x, undefined);
});

test('verdictView: the words the pages show; waiting until the desktop says', () => {
  assert.deepEqual(verdictView(null), { verdict: null, text: WAITING_TEXT, reasons: [] });
  assert.equal(WAITING_TEXT, 'waiting for the desktop');
  assert.deepEqual(VERDICT_TEXT, {
    healthy: 'Healthy',
    network: 'Network path',
    viewer: 'This viewer’s machine',
    desktop: 'The desktop machine',
  });
  const relayed = verdictView(null, { viaRelay: true });
  assert.equal(relayed.verdict, null);
  assert.equal(relayed.text, 'waiting for the desktop, through the relay');
  assert.equal(relayed.reasons.length, 1);
  const v = verdictView({ verdict: 'viewer', reasons: ['decode 50 ms > 33 ms'] }, { viaRelay: true });
  assert.deepEqual(v, { verdict: 'viewer', text: 'This viewer’s machine', reasons: ['decode 50 ms > 33 ms'] });
});

test('the panel’s rows: candidates and figures for people', () => {
  const rows = Object.fromEntries(pairRows(selectedPair(chromiumReport())));
  assert.equal(rows.Local, 'host udp 127.0.0.1:40000');
  assert.equal(rows['Round trip'], '12.3 ms');
  assert.equal(rows['Bytes sent / received'], '1.0 kB / 2.0 MB');
  assert.deepEqual(pairRows(null), [['Candidate pair', 'none yet']]);
  const p = Object.fromEntries(pipelineRows({ ...PIPELINE, jitter_ms: null }));
  assert.equal(p['Decode time'], '3.5 ms');
  assert.equal(p['Arrival jitter'], '—');
  assert.equal(formatCandidate({ type: 'relay', protocol: 'tcp', address: null, port: null }), 'relay tcp');
});

test('a diagnosis addressed to a relay’s viewer keeps its peer; a bad peer is refused', async () => {
  const { parseControl } = await import('../../impromptu/web/lib/protocol.js');
  const ok = parseControl(JSON.stringify({ type: 'diagnosis', peer: 'abc', verdict: 'network', reasons: [] }));
  assert.equal(ok.ok, true);
  assert.equal(ok.msg.peer, 'abc');
  const own = parseControl(JSON.stringify({ type: 'diagnosis', verdict: 'healthy', reasons: [] }));
  assert.equal(own.msg.peer, undefined);
  for (const peer of ['', 5, 'x'.repeat(257)]) {
    assert.equal(parseControl(JSON.stringify({ type: 'diagnosis', peer, verdict: 'healthy', reasons: [] })).ok, false);
  }
});
