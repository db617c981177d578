// node --test tests/js/ — framing and reassembly rules of docs/protocol.md §4, and the §5 control schema.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import {
  HEADER_SIZE,
  MAX_MESSAGE,
  MAX_PAYLOAD,
  Reassembler,
  buildFragment,
  controlMessages,
  fragmentFrame,
  isRename,
  needsRole,
  parseControl,
  parseFragment,
  seqDiff,
  seqNext,
} from '../../impromptu/web/lib/protocol.js';

const vectors = JSON.parse(readFileSync(new URL('../vectors.json', import.meta.url), 'utf8'));

function frameBytes(n, seed = 0) {
  return Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);
}

/** A Reassembler on a hand-driven clock that records its keyframe requests. */
function harness(opts = {}) {
  const clock = { t: 0 };
  const requests = [];
  const drops = [];
  const r = new Reassembler({
    now: () => clock.t,
    onKeyframeRequest: () => requests.push(clock.t),
    onDrop: (reason) => drops.push(reason),
    ...opts,
  });
  return { r, clock, requests, drops };
}

/** Push every fragment; return the frames delivered. */
function pushAll(r, fragments) {
  const out = [];
  for (const f of fragments) {
    const frame = r.push(f);
    if (frame !== null) out.push(frame);
  }
  return out;
}

const key = (seq, n = 100, extra = {}) => fragmentFrame({ seq, keyframe: true, captureUs: 1000 + seq, ...extra }, frameBytes(n, seq));
const delta = (seq, n = 100, extra = {}) => fragmentFrame({ seq, keyframe: false, captureUs: 1000 + seq, ...extra }, frameBytes(n, seq));

test('header layout matches the shared vector', () => {
  const v = vectors.fragment;
  const built = buildFragment(
    { version: v.version, flags: v.flags, surface: v.surface, seq: v.seq, index: v.index, count: v.count, size: v.size, captureUs: v.capture_us },
    Buffer.from(v.payload_hex, 'hex'),
  );
  assert.equal(Buffer.from(built).toString('hex'), v.hex);
  const h = parseFragment(Buffer.from(v.hex, 'hex'));
  assert.deepEqual(
    { version: h.version, flags: h.flags, keyframe: h.keyframe, surface: h.surface, seq: h.seq, index: h.index, count: h.count, size: h.size, captureUs: h.captureUs },
    { version: 1, flags: 1, keyframe: true, surface: 2, seq: v.seq, index: 1, count: 3, size: 40000, captureUs: v.capture_us },
  );
  assert.equal(Buffer.from(h.payload).toString('hex'), v.payload_hex);
});

test('sizes: 24-byte header, fragments of at most 16 KiB', () => {
  assert.equal(HEADER_SIZE, 24);
  assert.equal(MAX_PAYLOAD, 16360);
  const frags = fragmentFrame({ seq: 5 }, frameBytes(3 * MAX_PAYLOAD + 1));
  assert.equal(frags.length, 4);
  for (const f of frags) assert.ok(f.byteLength <= MAX_MESSAGE);
  assert.equal(frags[3].byteLength, HEADER_SIZE + 1);
  assert.equal(fragmentFrame({ seq: 1 }, frameBytes(MAX_PAYLOAD)).length, 1);
});

test('parseFragment accepts ArrayBuffer, Uint8Array views and rejects short input', () => {
  const [f] = fragmentFrame({ seq: 9, keyframe: true, surface: 3, captureUs: 2 ** 52 }, frameBytes(10));
  const ab = f.buffer.slice(0);
  assert.equal(parseFragment(ab).seq, 9);
  assert.equal(parseFragment(ab).captureUs, 2 ** 52);
  const padded = new Uint8Array(f.byteLength + 5);
  padded.set(f, 5);
  const h = parseFragment(padded.subarray(5));
  assert.equal(h.surface, 3);
  assert.deepEqual([...h.payload], [...frameBytes(10)]);
  assert.equal(parseFragment(new Uint8Array(23)), null);
  assert.equal(parseFragment('text'), null);
});

test('round trip: fragment then reassemble, in order and shuffled', () => {
  const { r } = harness();
  const data = frameBytes(50_000, 3);
  const frags = fragmentFrame({ seq: 1, keyframe: true, captureUs: 1234567 }, data);
  assert.equal(frags.length, 4);
  const [frame] = pushAll(r, [frags[2], frags[0], frags[3], frags[1]]);
  assert.equal(frame.seq, 1);
  assert.equal(frame.keyframe, true);
  assert.equal(frame.captureUs, 1234567);
  assert.deepEqual(frame.data, data);
  // And the next delta frame, in order.
  const [next] = pushAll(r, delta(2, 20_000));
  assert.deepEqual(next.data, frameBytes(20_000, 2));
  assert.equal(r.delivered, 2);
  assert.equal(r.lost, 0);
});

test('interleaved fragments of two frames (unordered channel)', () => {
  const { r, requests } = harness();
  pushAll(r, key(1));
  const a = delta(2, 40_000);
  const b = delta(3, 40_000);
  const out = pushAll(r, [a[0], b[0], a[1], b[1], a[2], b[2]]);
  assert.deepEqual(out.map((f) => f.seq), [2, 3]);
  assert.equal(requests.length, 0);
});

test('starts waiting for a keyframe: delta frames are withheld until one arrives', () => {
  const { r, requests } = harness();
  assert.equal(r.waitingForKeyframe, true);
  assert.deepEqual(pushAll(r, delta(1)), []);
  assert.equal(r.skipped, 1);
  assert.equal(requests.length, 0, 'no request within the grace period after start');
  const out = pushAll(r, key(2));
  assert.deepEqual(out.map((f) => f.seq), [2]);
  assert.equal(r.waitingForKeyframe, false);
});

test('asks for a keyframe after the grace period when none comes', () => {
  const { r, clock, requests } = harness();
  clock.t = 499;
  r.tick();
  assert.equal(requests.length, 0);
  clock.t = 500;
  r.tick();
  assert.deepEqual(requests, [500]);
});

test('a newer frame completing loses the incomplete older one; wait for a keyframe', () => {
  const { r, clock, requests } = harness();
  pushAll(r, key(1));
  const two = delta(2, 40_000);
  r.push(two[0]); // frame 2 stays incomplete
  clock.t = 10;
  assert.deepEqual(pushAll(r, delta(3)), [], 'frame 3 is a delta after a loss');
  assert.equal(r.lost, 1);
  assert.equal(r.waitingForKeyframe, true);
  assert.deepEqual(requests, [10]);
  // The rest of frame 2 arrives late: it is older than frame 3, refused.
  assert.deepEqual(pushAll(r, two.slice(1)), []);
  assert.ok(r.dropped.old >= 1);
  // Deltas keep being withheld; the keyframe restarts decoding.
  assert.deepEqual(pushAll(r, delta(4)), []);
  assert.deepEqual(pushAll(r, key(5)).map((f) => f.seq), [5]);
  assert.deepEqual(pushAll(r, delta(6)).map((f) => f.seq), [6]);
});

test('a gap in seq among delivered frames counts as loss', () => {
  const { r, requests } = harness();
  pushAll(r, key(1));
  pushAll(r, delta(2));
  assert.deepEqual(pushAll(r, delta(4)), []); // frame 3 never showed up at all
  assert.equal(r.waitingForKeyframe, true);
  assert.equal(requests.length, 1);
});

test('a keyframe right after a loss is delivered and ends the wait without a request', () => {
  const { r, requests } = harness();
  pushAll(r, key(1));
  r.push(delta(2, 40_000)[0]);
  assert.deepEqual(pushAll(r, key(3)).map((f) => f.seq), [3]);
  assert.equal(r.lost, 1);
  assert.equal(r.waitingForKeyframe, false);
  assert.equal(requests.length, 0);
});

test('never delivers a frame older than one delivered (late whole frame)', () => {
  const { r } = harness();
  const two = delta(2);
  pushAll(r, key(1));
  pushAll(r, key(3));
  assert.deepEqual(pushAll(r, two), []);
  assert.equal(r.dropped.old, 1);
  assert.deepEqual(pushAll(r, key(3)), [], 'a duplicate of a delivered frame is old too');
});

test('keyframe requests repeat at most every 500 ms while waiting', () => {
  const { r, clock, requests } = harness();
  pushAll(r, key(1));
  pushAll(r, delta(3)); // gap → request at t=0
  for (clock.t = 0; clock.t <= 1600; clock.t += 100) {
    r.tick();
    pushAll(r, delta(4 + clock.t / 100)); // deltas keep arriving, also ask (rate-limited)
  }
  assert.deepEqual(requests, [0, 500, 1000, 1500]);
  pushAll(r, key(100));
  clock.t = 5000;
  r.tick();
  assert.equal(requests.length, 4, 'no request once the keyframe came');
});

test('needKeyframe (decoder trouble) asks at once, then waits', () => {
  const { r, clock, requests } = harness();
  pushAll(r, key(1));
  clock.t = 700;
  r.needKeyframe();
  assert.deepEqual(requests, [700]);
  assert.deepEqual(pushAll(r, delta(2)), []);
  r.needKeyframe(); // within 500 ms of the last request: not repeated
  assert.equal(requests.length, 1);
});

test('reset (new config) waits for a keyframe and drops frames in flight', () => {
  const { r, clock, requests } = harness();
  pushAll(r, key(1));
  r.push(delta(2, 40_000)[0]);
  clock.t = 100;
  r.reset();
  assert.equal(r.pendingCount, 0);
  assert.equal(r.waitingForKeyframe, true);
  assert.deepEqual(pushAll(r, delta(3)), []);
  assert.equal(requests.length, 0, 'the desktop sends a keyframe after config by itself');
  assert.deepEqual(pushAll(r, key(4)).map((f) => f.seq), [4]);
});

test('an incomplete frame times out after 1 s', () => {
  const { r, clock, requests } = harness();
  pushAll(r, key(1));
  const two = delta(2, 40_000);
  clock.t = 0;
  r.push(two[0]);
  clock.t = 1000;
  r.tick();
  assert.equal(r.lost, 0, 'exactly 1 s is not yet more than 1 s');
  clock.t = 1001;
  r.tick();
  assert.equal(r.lost, 1);
  assert.equal(r.pendingCount, 0);
  assert.deepEqual(requests, [1001]);
  // Its remaining fragments, arriving later still, don't start it again.
  assert.deepEqual(pushAll(r, two.slice(1)), []);
  assert.equal(r.pendingCount, 0);
  assert.ok(r.dropped.lost >= 1);
});

test('memory bound: at most 8 frames in reassembly, oldest discarded first', () => {
  const { r } = harness();
  pushAll(r, key(1));
  const partial = [];
  for (let seq = 2; seq <= 10; seq++) {
    const frags = delta(seq, 40_000);
    partial.push(frags);
    r.push(frags[0]);
    assert.ok(r.pendingCount <= 8);
  }
  assert.equal(r.pendingCount, 8);
  assert.equal(r.lost, 1); // seq 2 went when seq 10 arrived
  assert.deepEqual(pushAll(r, partial[0].slice(1)), [], 'the evicted frame cannot come back');
  // Frame 3 is still being reassembled and completes (but is a delta after a loss).
  assert.deepEqual(pushAll(r, partial[1].slice(1)), []);
  assert.equal(r.skipped, 1);
  assert.equal(r.pendingCount, 7);
});

test('seq wraps around 2^32', () => {
  assert.equal(seqDiff(0, 0xffffffff), 1);
  assert.equal(seqDiff(0xffffffff, 0), -1);
  assert.equal(seqDiff(5, 3), 2);
  assert.equal(seqDiff(0x7fffffff, 0), 0x7fffffff);
  assert.equal(seqNext(0xffffffff), 0);
  const { r, requests } = harness();
  const out = [
    ...pushAll(r, key(0xfffffffe)),
    ...pushAll(r, delta(0xffffffff)),
    ...pushAll(r, delta(0)),
    ...pushAll(r, delta(1)),
  ];
  assert.deepEqual(out.map((f) => f.seq), [0xfffffffe, 0xffffffff, 0, 1]);
  assert.equal(requests.length, 0);
  assert.deepEqual(pushAll(r, delta(0xffffffff)), [], 'pre-wrap frame is old after the wrap');
  // An incomplete pre-wrap frame is lost when a post-wrap one completes.
  const { r: r2 } = harness();
  pushAll(r2, key(0xfffffffd));
  r2.push(delta(0xfffffffe, 40_000)[0]);
  pushAll(r2, key(2));
  assert.equal(r2.lost, 1);
});

test('malformed fragments are dropped, and each reason reported once', () => {
  const { r, drops } = harness();
  const good = fragmentFrame({ seq: 1, keyframe: true }, frameBytes(40_000));
  const hdr = (over, payload = frameBytes(10)) =>
    buildFragment({ seq: 1, index: 0, count: 3, size: 40_000, keyframe: true, ...over }, payload);

  assert.equal(r.push(new Uint8Array(10)), null);
  assert.equal(r.push(hdr({ version: 2 })), null);
  assert.equal(r.push(hdr({ version: 2 })), null);
  assert.equal(r.push(hdr({ index: 3 })), null);
  assert.equal(r.push(hdr({ count: 0, index: 0 })), null);
  assert.equal(r.push(hdr({ size: 5 })), null); // payload larger than size
  assert.equal(r.push(hdr({ surface: 1 })), null);
  assert.equal(r.pendingCount, 0, 'nothing malformed starts a frame');

  r.push(good[0]);
  assert.equal(r.push(hdr({ index: 1, count: 4 })), null);
  assert.equal(r.push(hdr({ index: 1, size: 40_001 })), null);
  assert.equal(r.push(good[0]), null); // duplicate index
  // The genuine frame still completes.
  const [frame] = pushAll(r, good.slice(1));
  assert.deepEqual(frame.data, frameBytes(40_000));

  // Payloads that would add up to more than size.
  const big = (index) => buildFragment({ seq: 7, index, count: 3, size: 20_000, keyframe: true }, frameBytes(MAX_PAYLOAD));
  assert.equal(r.push(big(0)), null);
  assert.equal(r.push(big(1)), null);
  assert.equal(r.dropped.overflow, 2);
  assert.equal(r.dropped.version, 2);
  assert.deepEqual(drops, ['short', 'version', 'index', 'count', 'overflow', 'surface', 'mismatch', 'duplicate']);
});

test('a frame whose fragments all arrived but fall short of size is lost', () => {
  const { r } = harness();
  pushAll(r, key(1));
  const a = buildFragment({ seq: 2, index: 0, count: 2, size: 100 }, frameBytes(10));
  const b = buildFragment({ seq: 2, index: 1, count: 2, size: 100 }, frameBytes(10));
  assert.deepEqual(pushAll(r, [a, b]), []);
  assert.equal(r.lost, 1);
  assert.equal(r.waitingForKeyframe, true);
});

test('only the configured surface is reassembled', () => {
  const { r } = harness({ surface: 4 });
  assert.deepEqual(pushAll(r, key(1)), []);
  assert.deepEqual(pushAll(r, key(1, 100, { surface: 4 })).map((f) => f.surface), [4]);
});

test('parseControl validates config and drops the rest', () => {
  const ok = parseControl(JSON.stringify({ type: 'config', surface: 0, codec: 'avc1.42E01F', width: 1280, height: 720, fps: 30, extra: 1 }));
  assert.deepEqual(ok, { ok: true, msg: { type: 'config', surface: 0, codec: 'avc1.42E01F', width: 1280, height: 720, fps: 30 } });
  const bad = [
    'not json',
    '[]',
    '{"codec":"vp8"}',
    JSON.stringify({ type: 'config', surface: 0, codec: 'vp8', width: 1280.5, height: 720, fps: 30 }),
    JSON.stringify({ type: 'config', surface: 0, codec: '', width: 1280, height: 720, fps: 30 }),
    JSON.stringify({ type: 'config', surface: -1, codec: 'vp8', width: 1280, height: 720, fps: 30 }),
    JSON.stringify({ type: 'config', surface: 0, codec: 'vp8', width: 0, height: 720, fps: 30 }),
    JSON.stringify({ type: 'config', surface: 0, codec: 'vp8', width: 10, height: '720', fps: 30 }),
    JSON.stringify({ type: 'config', surface: 0, codec: 'vp8', width: 10, height: 720 }),
    JSON.stringify({ type: 'surprise' }),
  ];
  for (const text of bad) assert.equal(parseControl(text).ok, false, text);
});

test('parseControl: an unknown type has a fixed reason (a log-once key); the type, shortened, is detail', () => {
  assert.deepEqual(parseControl('{"type":"surprise"}'), { ok: false, reason: 'unknown type', detail: '"surprise"' });
  assert.deepEqual(parseControl(JSON.stringify({ type: 'y'.repeat(5000) })), {
    ok: false,
    reason: 'unknown type',
    detail: JSON.stringify('y'.repeat(40)),
  });
});

test('page → desktop messages have the §5 shapes', () => {
  assert.deepEqual(controlMessages.keyframeRequest(0), { type: 'keyframe.request', surface: 0 });
  assert.deepEqual(controlMessages.move(3, 4, 2), { type: 'input.move', x: 3, y: 4, surface: 2 });
  assert.deepEqual(controlMessages.button(1, true, 3, 4, 1), { type: 'input.button', button: 1, down: true, x: 3, y: 4, surface: 1 });
  assert.deepEqual(controlMessages.wheel(0, -2, 3, 4, 7), { type: 'input.wheel', dx: 0, dy: -2, x: 3, y: 4, surface: 7 });
  assert.deepEqual(controlMessages.key('KeyA', 'a', false, 3), { type: 'input.key', code: 'KeyA', key: 'a', down: false, surface: 3 });
  assert.deepEqual(controlMessages.release(), { type: 'input.release' }, 'releases everything this viewer holds, on every surface');
});

test('input names its surface always, 0 (the whole display) included (§8)', () => {
  assert.deepEqual(controlMessages.move(3, 4), { type: 'input.move', x: 3, y: 4, surface: 0 });
  assert.equal(controlMessages.button(1, false, 0, 0).surface, 0);
  assert.equal(controlMessages.wheel(1, 0, 0, 0).surface, 0);
  assert.equal(controlMessages.key('Enter', 'Enter', true).surface, 0);
});

const CONFIG = { type: 'config', surface: 2, codec: 'vp8', width: 640, height: 480, fps: 30 };

test('parseControl keeps a config’s optional title (§8), at most 200 characters', () => {
  const titled = parseControl(JSON.stringify({ ...CONFIG, title: 'xterm — ~/src' }));
  assert.deepEqual(titled, { ok: true, msg: { ...CONFIG, title: 'xterm — ~/src' } });
  assert.deepEqual(parseControl(JSON.stringify({ ...CONFIG, title: '' })).msg.title, '');
  assert.equal(parseControl(JSON.stringify({ ...CONFIG, title: 't'.repeat(200) })).ok, true);
  assert.ok(!('title' in parseControl(JSON.stringify(CONFIG)).msg), 'no title: none invented');
  for (const title of ['t'.repeat(201), 5, null, ['a'], { a: 1 }]) {
    assert.deepEqual(parseControl(JSON.stringify({ ...CONFIG, title })), { ok: false, reason: 'config.title' }, JSON.stringify(title));
  }
});

test('isRename: the same stream under a new title, and nothing else (§8)', () => {
  const before = { ...CONFIG, title: 'vim a.txt' };
  assert.equal(isRename(before, { ...CONFIG, title: 'vim b.txt' }), true);
  assert.equal(isRename({ ...CONFIG }, { ...CONFIG, title: 'first title' }), true, 'a title where there was none');
  assert.equal(isRename(before, { ...before }), false, 'the very same config starts the surface afresh');
  assert.equal(isRename(before, { ...CONFIG }), false, 'no title says nothing about it');
  for (const change of [{ width: CONFIG.width + 2 }, { height: CONFIG.height + 2 }, { codec: 'avc1.640028' }, { fps: 5 }, { surface: 9 }]) {
    assert.equal(isRename(before, { ...CONFIG, ...change, title: 'other' }), false, JSON.stringify(change));
  }
  assert.equal(isRename(null, before), false);
  assert.equal(isRename(undefined, before), false);
});

test('parseControl validates surface.state (§8)', () => {
  const state = (fields) => parseControl(JSON.stringify({ type: 'surface.state', surface: 1, state: 'paused', reason: 'the window is minimised', ...fields }));
  assert.deepEqual(state({ extra: true }), {
    ok: true,
    msg: { type: 'surface.state', surface: 1, state: 'paused', reason: 'the window is minimised' },
  });
  assert.equal(state({ state: 'live', reason: '' }).ok, true);
  assert.equal(state({ state: 'ended', reason: 'r'.repeat(200) }).ok, true);
  assert.deepEqual(state({ surface: 65536 }), { ok: false, reason: 'surface.state.surface' });
  assert.deepEqual(state({ surface: '1' }), { ok: false, reason: 'surface.state.surface' });
  assert.deepEqual(state({ state: 'gone' }), { ok: false, reason: 'surface.state.state' });
  assert.deepEqual(state({ state: undefined }), { ok: false, reason: 'surface.state.state' });
  assert.deepEqual(state({ reason: undefined }), { ok: false, reason: 'surface.state.reason' });
  assert.deepEqual(state({ reason: 'r'.repeat(201) }), { ok: false, reason: 'surface.state.reason' });
});

const PRESENCE = {
  type: 'presence',
  you: '3f2a9c0d11223344',
  role: 'control',
  viewers: 3,
  controllers: 2,
  mode: 'one',
  holder: 'a1b2c3d4e5f60718',
  requests: ['3f2a9c0d11223344'],
};
const presenceText = (fields) => JSON.stringify({ ...PRESENCE, ...fields });

test('parseControl keeps the known fields of a valid presence', () => {
  const ok = parseControl(presenceText({ extra: 1 }));
  assert.deepEqual(ok, { ok: true, msg: { ...PRESENCE } });
  const shared = parseControl(presenceText({ mode: 'shared', holder: null, requests: [] }));
  assert.deepEqual(shared.msg, { ...PRESENCE, mode: 'shared', holder: null, requests: [] });
  const view = parseControl(presenceText({ role: 'view', viewers: 1, controllers: 0, holder: null, requests: [] }));
  assert.equal(view.ok, true);
  assert.equal(view.msg.role, 'view');
  // The requests array is the message's own copy.
  const raw = JSON.parse(presenceText({}));
  const parsed = parseControl(JSON.stringify(raw));
  assert.notEqual(parsed.msg.requests, raw.requests);
});

test('parseControl drops a presence with a missing, mistyped or out-of-range field', () => {
  const bad = [
    [{ you: undefined }, 'presence.you'],
    [{ you: '' }, 'presence.you'],
    [{ you: 7 }, 'presence.you'],
    [{ you: 'x'.repeat(257) }, 'presence.you'],
    [{ role: 'admin' }, 'presence.role'],
    [{ role: undefined }, 'presence.role'],
    [{ viewers: 0 }, 'presence.viewers'],
    [{ viewers: 2.5 }, 'presence.viewers'],
    [{ viewers: '3' }, 'presence.viewers'],
    [{ controllers: -1 }, 'presence.controllers'],
    [{ controllers: 4 }, 'presence.controllers'],
    [{ controllers: null }, 'presence.controllers'],
    [{ mode: 'many' }, 'presence.mode'],
    [{ mode: undefined }, 'presence.mode'],
    [{ holder: undefined }, 'presence.holder'],
    [{ holder: 12 }, 'presence.holder'],
    [{ holder: '' }, 'presence.holder'],
    [{ mode: 'shared', holder: 'a1b2c3d4e5f60718', requests: [] }, 'presence.holder'],
    [{ requests: undefined }, 'presence.requests'],
    [{ requests: 'a1b2' }, 'presence.requests'],
    [{ requests: [1] }, 'presence.requests'],
    [{ requests: [''] }, 'presence.requests'],
    [{ requests: ['a', 'b', 'c', 'd'] }, 'presence.requests'],
    [{ mode: 'shared', holder: null, requests: ['3f2a9c0d11223344'] }, 'presence.requests'],
  ];
  for (const [fields, reason] of bad) {
    const text = presenceText(fields);
    assert.deepEqual(parseControl(text), { ok: false, reason }, text);
  }
});

test('parseControl validates stream.skipped', () => {
  assert.deepEqual(parseControl(JSON.stringify({ type: 'stream.skipped', surface: 0, frames: 12, extra: true })), {
    ok: true,
    msg: { type: 'stream.skipped', surface: 0, frames: 12 },
  });
  const bad = [
    [{ surface: 0 }, 'stream.skipped.frames'],
    [{ surface: 0, frames: 0 }, 'stream.skipped.frames'],
    [{ surface: 0, frames: 1.5 }, 'stream.skipped.frames'],
    [{ surface: 0, frames: '3' }, 'stream.skipped.frames'],
    [{ frames: 3 }, 'stream.skipped.surface'],
    [{ surface: -1, frames: 3 }, 'stream.skipped.surface'],
    [{ surface: 0x10000, frames: 3 }, 'stream.skipped.surface'],
  ];
  for (const [fields, reason] of bad) {
    const text = JSON.stringify({ type: 'stream.skipped', ...fields });
    assert.deepEqual(parseControl(text), { ok: false, reason }, text);
  }
});

test('control.request and control.release have the §5 shapes', () => {
  assert.deepEqual(controlMessages.controlRequest(), { type: 'control.request' });
  assert.deepEqual(controlMessages.controlRelease(), { type: 'control.release' });
});

test('parseControl keeps a relay’s `relayed` map, and only a well-formed one', () => {
  const relayed = { b00b1e5000000001: 'control', c0ffee0000000002: 'view' };
  const ok = parseControl(presenceText({ relayed }));
  assert.deepEqual(ok, { ok: true, msg: { ...PRESENCE, relayed } });
  assert.equal(parseControl(presenceText({ relayed: {} })).msg.relayed.constructor, Object);
  assert.equal('relayed' in parseControl(presenceText({})).msg, false, 'absent stays absent');
  // A peer id named like a prototype property stays an ordinary key.
  const proto = parseControl('{' + presenceText({}).slice(1, -1) + ',"relayed":{"__proto__":"view"}}');
  assert.equal(proto.ok, true);
  assert.equal(Object.hasOwn(proto.msg.relayed, '__proto__'), true);
  assert.equal(Object.getPrototypeOf(proto.msg.relayed), Object.prototype);
  const many = Object.fromEntries(Array.from({ length: 1025 }, (_, i) => [`p${i}`, 'view']));
  const bad = [null, [], 'x', { p1: 'admin' }, { p1: true }, { ['x'.repeat(257)]: 'view' }, many];
  for (const value of bad) {
    assert.deepEqual(parseControl(presenceText({ relayed: value })), { ok: false, reason: 'presence.relayed' });
  }
  delete many.p0;
  assert.equal(parseControl(presenceText({ relayed: many })).ok, true, '1024 entries are fine');
});

test('needsRole: input, control.* of the floor and control.hello; not keyframe.request', () => {
  const roles = ['input.move', 'input.key', 'input.release', 'control.request', 'control.release', 'control.hello'];
  for (const type of roles) assert.equal(needsRole(type), true, type);
  for (const type of ['keyframe.request', 'relayed', 'relay.viewers', 'control.other', 'inputs', undefined]) {
    assert.equal(needsRole(type), false, String(type));
  }
  assert.deepEqual(controlMessages.controlHello(), { type: 'control.hello' });
});
