// node --test tests/js/ — what a relay forwards to whom (docs/protocol.md §6–7): keyframe gating, skipping for a
// viewer that backs up, keyframe-request rate limiting, viewer → relay messages, presence and viewer reports.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, test } from 'node:test';

import { MAX_PAYLOAD, buildFragment, fragmentFrame, parseFragment } from '../../impromptu/web/lib/protocol.js';
import {
  DEFAULT_CAPACITY,
  KeyframeRequests,
  MAX_BOX,
  MAX_BUFFERED,
  MAX_DOWNSTREAM_TEXT,
  MAX_REPORT_TEXT,
  MAX_SURFACES,
  MIN_BUFFERED,
  VideoFanout,
  ViewerBook,
  configsToForward,
  parseCapacity,
  parseShow,
  parseDownstream,
  presenceFor,
} from '../../impromptu/web/lib/relay.js';
import { FakeTimers } from './fake-timers.mjs';

const timers = new FakeTimers();
beforeEach(() => timers.install());
afterEach(() => timers.uninstall());

/** The fragments of frame `seq`: `count` of them (10 payload bytes each), keyframe or not. */
function frame(seq, { keyframe = false, count = 3, surface = 0 } = {}) {
  return fragmentFrame({ surface, seq, keyframe }, new Uint8Array(10 * count).fill(seq & 0xff), 10);
}

/** A viewer's video channel: records what it is sent; tests set `bufferedAmount`. */
class FakeSink {
  constructor() {
    this.sent = [];
    this.bufferedAmount = 0;
    this.drainThreshold = null;
  }
  send(message) {
    this.sent.push(message);
  }
  watchDrain(threshold) {
    this.drainThreshold = threshold;
  }
  /** What arrived, as "seq:index" strings, and forget it. */
  take() {
    const got = this.sent.map((m) => {
      const h = parseFragment(m);
      return `${h.seq}:${h.index}`;
    });
    this.sent = [];
    return got;
  }
}

function harness() {
  const requests = [];
  const skipped = [];
  const drops = [];
  const keyframes = [];
  const fanout = new VideoFanout({
    requestKeyframe: (surface) => requests.push(surface),
    onSkipped: (id, surface, frames) => skipped.push([id, surface, frames]),
    onKeyframe: (surface) => keyframes.push(surface),
    onDrop: (reason) => drops.push(reason),
    now: () => timers.now,
  });
  const push = (...messages) => messages.flat().forEach((m) => fanout.push(m));
  return { fanout, requests, skipped, drops, keyframes, push };
}

test('parseCapacity: ?max= from 0 to 64, 4 when absent, a sentence for anything else', () => {
  assert.deepEqual(parseCapacity(''), { ok: true, capacity: DEFAULT_CAPACITY });
  assert.equal(DEFAULT_CAPACITY, 4);
  assert.deepEqual(parseCapacity('?other=1'), { ok: true, capacity: 4 });
  assert.deepEqual(parseCapacity('?max=0'), { ok: true, capacity: 0 });
  assert.deepEqual(parseCapacity('?max=64'), { ok: true, capacity: 64 });
  assert.deepEqual(parseCapacity('?max=07'), { ok: true, capacity: 7 });
  for (const bad of ['?max=65', '?max=-1', '?max=abc', '?max=', '?max=4.5', '?max=1e1', '?max=100', '?max=%204']) {
    const r = parseCapacity(bad);
    assert.equal(r.ok, false, bad);
    assert.match(r.reason, /whole number of viewers from 0 to 64/);
  }
});

test('a viewer starts at a keyframe: deltas before it are not sent', () => {
  const { fanout, push } = harness();
  push(frame(1, { keyframe: true }), frame(2), frame(3));
  const sink = new FakeSink();
  fanout.add('v', sink);
  push(frame(4), frame(5));
  assert.deepEqual(sink.take(), [], 'no keyframe in the last two frames: wait');
  push(frame(6, { keyframe: true }), frame(7, { count: 1 }));
  assert.deepEqual(sink.take(), ['6:0', '6:1', '6:2', '7:0']);
  assert.deepEqual(fanout.stats('v'), { framesForwarded: 2, framesSkipped: 0 }, 'waiting for the first is no skip');
});

test('a keyframe whose first fragments came before the viewer was ready is delivered whole', () => {
  const { fanout, push } = harness();
  const key = frame(10, { keyframe: true, count: 4 });
  push(frame(9), key[2], key[0]); // unordered: index 2 before index 0
  const sink = new FakeSink();
  fanout.add('v', sink);
  assert.deepEqual(sink.take(), ['10:2', '10:0'], 'what was kept goes out at once');
  push(key[3], key[1], frame(11));
  assert.deepEqual(sink.take(), ['10:3', '10:1', '11:0', '11:1', '11:2']);
});

test('the last two frames are kept: a keyframe followed by part of a delta', () => {
  const { fanout, push } = harness();
  const delta = frame(21);
  push(frame(20, { keyframe: true }), delta[1]);
  const sink = new FakeSink();
  fanout.add('v', sink);
  assert.deepEqual(sink.take(), ['20:0', '20:1', '20:2', '21:1']);
  push(delta[0], delta[2]);
  assert.deepEqual(sink.take(), ['21:0', '21:2']);
  // A third frame pushes the keyframe out: a later viewer must wait for the next one.
  push(frame(22));
  const late = new FakeSink();
  fanout.add('w', late);
  push(frame(23));
  assert.deepEqual(late.take(), []);
});

test('fragments of a frame follow the decision made at its first one, in any order', () => {
  const { fanout, push } = harness();
  const sink = new FakeSink();
  fanout.add('v', sink);
  const [a, b] = [frame(31), frame(32)];
  push(frame(30, { keyframe: true }));
  sink.take();
  push(b[0], a[1], b[1], a[0], a[2], b[2]); // frame 32 overtakes frame 31
  assert.deepEqual(sink.take(), ['32:0', '31:1', '32:1', '31:0', '31:2', '32:2']);
  // A frame older than the keyframe the viewer started at is not sent, even if it comes late.
  const other = new FakeSink();
  push(frame(40, { keyframe: true }));
  fanout.add('w', other);
  other.take();
  push(frame(39));
  assert.deepEqual(other.take(), []);
});

test('malformed fragments are dropped and reported once per reason', () => {
  const { fanout, push, drops } = harness();
  const sink = new FakeSink();
  fanout.add('v', sink);
  const bad = frame(1, { keyframe: true })[0];
  bad[0] = 9; // version
  push(new Uint8Array(5), bad, bad);
  assert.deepEqual(sink.take(), []);
  assert.deepEqual(drops, ['short', 'version']);
});

test('a viewer that backs up skips whole frames, resumes at a keyframe and is told how many it missed', () => {
  const { fanout, push, requests, skipped } = harness();
  const slow = new FakeSink();
  const fast = new FakeSink();
  fanout.add('slow', slow);
  fanout.add('fast', fast);
  push(frame(1, { keyframe: true }), frame(2));
  assert.equal(slow.take().length, 6);
  fast.take();

  slow.bufferedAmount = MIN_BUFFERED + 1;
  push(frame(3));
  assert.deepEqual(slow.take(), [], 'over the limit: skipped');
  assert.equal(slow.drainThreshold, MIN_BUFFERED / 4, 'told to report a drain below a quarter');
  slow.bufferedAmount = MIN_BUFFERED / 4 + 1;
  push(frame(4));
  assert.deepEqual(slow.take(), [], 'behind: still above a quarter');
  assert.deepEqual(requests, [], 'nothing asked while behind');
  assert.deepEqual(fast.take().length, 6, 'nobody else waits');

  // The drain is reported (bufferedamountlow), even while the screen is still: ask for a keyframe.
  slow.bufferedAmount = 0;
  fanout.drained('slow');
  assert.deepEqual(requests, [0]);
  fanout.drained('fast');
  assert.deepEqual(requests, [0], 'a drain of a viewer that is not behind asks nothing');
  push(frame(5));
  assert.deepEqual(slow.take(), [], 'a delta cannot resume it');
  assert.deepEqual(requests, [0, 0], 'caught up: asks for the keyframe that resumes it');
  assert.deepEqual(skipped, []);
  push(frame(6, { keyframe: true }));
  assert.deepEqual(slow.take(), ['6:0', '6:1', '6:2']);
  assert.deepEqual(skipped, [['slow', 0, 3]], 'frames 3, 4 and 5');
  assert.deepEqual(fanout.stats('slow'), { framesForwarded: 3, framesSkipped: 3 });
  assert.deepEqual(fanout.stats('fast'), { framesForwarded: 6, framesSkipped: 0 });
  push(frame(7));
  assert.deepEqual(slow.take(), ['7:0', '7:1', '7:2']);
  assert.equal(skipped.length, 1);
});

test('a keyframe that arrives as the viewer catches up resumes it without another request', () => {
  const { fanout, push, requests, skipped } = harness();
  const sink = new FakeSink();
  fanout.add('v', sink);
  push(frame(1, { keyframe: true }));
  sink.bufferedAmount = MIN_BUFFERED * 2;
  push(frame(2));
  sink.bufferedAmount = 0;
  push(frame(3, { keyframe: true }));
  sink.take();
  assert.deepEqual(requests, []);
  assert.deepEqual(skipped, [['v', 0, 1]]);
});

test('the limit is half a second of the stream, between 1 MiB and 4 MiB', () => {
  const { fanout } = harness();
  const big = (seq) => fragmentFrame({ seq, keyframe: true }, new Uint8Array(100_000));
  assert.equal(fanout.limit(), MIN_BUFFERED);
  for (let i = 0; i < 100; i++) {
    timers.now = i * 20; // 10 MB in 2 s
    for (const m of big(i)) fanout.push(m);
  }
  const bytes = 100 * big(0).reduce((n, m) => n + m.byteLength, 0);
  assert.equal(fanout.limit(), Math.floor(bytes / 4));
  for (let i = 100; i < 200; i++) {
    timers.now = 2000 + (i - 100) * 5; // four times the rate
    for (const m of big(i)) fanout.push(m);
  }
  assert.equal(fanout.limit(), MAX_BUFFERED);
  timers.now = 10_000;
  fanout.push(frame(500)[0]);
  assert.equal(fanout.limit(), MIN_BUFFERED, 'the window forgets what is older than 2 s');
});

test('a new upstream: history forgotten, every viewer waits for a keyframe again', () => {
  const { fanout, push } = harness();
  const sink = new FakeSink();
  fanout.add('v', sink);
  push(frame(100, { keyframe: true }), frame(101));
  sink.take();
  fanout.reset();
  push(frame(0), frame(1)); // the new upstream's numbers start over
  assert.deepEqual(sink.take(), []);
  push(frame(2, { keyframe: true }));
  assert.deepEqual(sink.take(), ['2:0', '2:1', '2:2']);
  const late = new FakeSink();
  fanout.reset();
  fanout.add('w', late);
  assert.deepEqual(late.take(), [], 'nothing kept across upstreams');
});

test('every surface goes to every viewer, unchanged: the fanout does not care whose frames they are (§8)', () => {
  const { fanout, push, requests } = harness();
  const early = new FakeSink();
  fanout.add('early', early);
  const sent = [];
  // Two shared windows, interleaved fragment by fragment, as the desktop's one video channel carries them.
  for (let seq = 1; seq <= 4; seq++) {
    const a = frame(seq, { keyframe: seq === 1, surface: 1 });
    const b = frame(seq, { keyframe: seq === 1, surface: 2, count: 2 });
    for (const m of [a[0], b[0], a[1], b[1], a[2]]) {
      push(m);
      sent.push(m);
    }
    if (seq === 2) fanout.add('late', new FakeSink()); // joins mid-stream: starts at the kept keyframes
  }
  assert.equal(early.sent.length, sent.length, 'every fragment of both surfaces');
  assert.ok(early.sent.every((m, i) => m === sent[i]), 'the very messages, in their order');
  const late = fanout._viewers.get('late').sink;
  const bySurface = (sink) => [1, 2].map((n) => sink.sent.filter((m) => parseFragment(m).surface === n).length);
  assert.deepEqual(bySurface(late), [12, 8], 'both surfaces from their keyframes on');
  assert.deepEqual(requests, [], 'no keyframe needed for either');
  assert.deepEqual(fanout.stats('early'), { framesForwarded: 8, framesSkipped: 0 });
});

test('configsToForward: a rename resets nothing; a new upstream’s config starts viewers afresh even if renamed', () => {
  const c = (fields = {}) => ({ type: 'config', surface: 1, codec: 'vp8', width: 200, height: 120, fps: 30, title: 'a', ...fields });
  assert.deepEqual(configsToForward(undefined, undefined, c()), { reset: false, send: [c()] }, 'the first ever');
  assert.deepEqual(configsToForward(c(), c(), c({ title: 'b' })), { reset: false, send: [c({ title: 'b' })] });
  assert.deepEqual(configsToForward(c(), c(), c({ width: 300 })), { reset: true, send: [c({ width: 300 })] });
  assert.deepEqual(configsToForward(c(), c(), c()), { reset: true, send: [c()] }, 'the same again: afresh');
  // A new upstream (nothing from it yet): viewers had `a` from the old one.
  assert.deepEqual(configsToForward(undefined, c(), c()), { reset: false, send: [c()] });
  assert.deepEqual(configsToForward(undefined, c(), c({ width: 300 })), { reset: false, send: [c({ width: 300 })] });
  assert.deepEqual(
    configsToForward(undefined, c(), c({ title: 'b' })),
    { reset: false, send: [c(), c({ title: 'b' })] },
    'what they have (afresh), then the rename',
  );
  const untitled = c();
  delete untitled.title;
  const { send } = configsToForward(undefined, untitled, c({ title: 'b' }));
  assert.deepEqual(send, [untitled, c({ title: 'b' })]);
  assert.ok(!('title' in send[0]));
});

test('surfaces are gated separately', () => {
  const { fanout, push } = harness();
  const sink = new FakeSink();
  fanout.add('v', sink);
  push(frame(1, { keyframe: true, surface: 0, count: 1 }), frame(1, { surface: 1, count: 1 }));
  push(frame(2, { keyframe: true, surface: 1, count: 1 }));
  assert.deepEqual(
    sink.sent.map((m) => `${parseFragment(m).surface}/${parseFragment(m).seq}`),
    ['0/1', '1/2'],
  );
  fanout.remove('v');
  assert.equal(fanout.stats('v'), null);
  push(frame(3, { surface: 0, count: 1 }));
  assert.equal(sink.sent.length, 2, 'a removed viewer gets nothing');
});

test('a fragment seen before is dropped, not forwarded again', () => {
  const { fanout, push, drops } = harness();
  const sink = new FakeSink();
  fanout.add('v', sink);
  const key = frame(1, { keyframe: true });
  push(key[0], key[0], key[1], key[0], key[2], key[1]);
  assert.deepEqual(sink.take(), ['1:0', '1:1', '1:2']);
  const delta = frame(2);
  push(delta, frame(3), delta[1]); // a late copy of a frame still tracked
  assert.deepEqual(sink.take(), ['2:0', '2:1', '2:2', '3:0', '3:1', '3:2']);
  assert.deepEqual(drops, ['duplicate'], 'reported once');
  assert.equal(fanout.dropped, 4);
  // What is kept for a later viewer holds each fragment once.
  const late = new FakeSink();
  push(frame(4, { keyframe: true })[0], frame(4, { keyframe: true })[0]);
  fanout.add('w', late);
  assert.deepEqual(late.take(), ['4:0']);
});

test('fragments that disagree with their frame, overflow it, or come long after it are dropped', () => {
  const { fanout, push, drops } = harness();
  const sink = new FakeSink();
  fanout.add('v', sink);
  const key = frame(10, { keyframe: true, count: 3 });
  push(key[0]);
  // Same frame, another count / size / flags.
  push(fragmentFrame({ seq: 10, keyframe: true }, new Uint8Array(40), 10)[1]);
  push(fragmentFrame({ seq: 10, keyframe: true }, new Uint8Array(30), 15)[1]);
  push(fragmentFrame({ seq: 10, keyframe: false }, new Uint8Array(30), 10)[1]);
  assert.deepEqual(sink.take(), ['10:0']);
  assert.deepEqual(drops, ['mismatch']);
  // Payloads adding up to more than the frame's size.
  const over = buildFragment({ surface: 0, seq: 11, index: 0, count: 2, size: 12, keyframe: false }, new Uint8Array(10));
  const over2 = buildFragment({ surface: 0, seq: 11, index: 1, count: 2, size: 12, keyframe: false }, new Uint8Array(10));
  push(key[1], key[2], over, over2);
  assert.deepEqual(sink.take(), ['10:1', '10:2', '11:0']);
  assert.deepEqual(drops, ['mismatch', 'overflow']);
  // A frame two or more behind the newest that was never seen (or is forgotten): nobody could complete it.
  push(frame(12), frame(13));
  sink.take();
  push(frame(9), frame(3));
  assert.deepEqual(sink.take(), []);
  assert.deepEqual(drops, ['mismatch', 'overflow', 'old']);
  // A payload larger than any the desktop sends.
  push(buildFragment({ surface: 0, seq: 14, index: 0, count: 1, size: MAX_PAYLOAD + 1 }, new Uint8Array(MAX_PAYLOAD + 1)));
  assert.deepEqual(sink.take(), []);
  assert.deepEqual(drops, ['mismatch', 'overflow', 'old', 'large']);
});

test('at most 16 surfaces are tracked: fragments of more are dropped and reported once', () => {
  const { fanout, push, drops } = harness();
  const sink = new FakeSink();
  fanout.add('v', sink);
  assert.equal(MAX_SURFACES, 16);
  for (let surface = 0; surface < 20; surface++) push(frame(1, { keyframe: true, surface, count: 1 }));
  const surfaces = sink.sent.map((m) => parseFragment(m).surface);
  assert.deepEqual(surfaces, Array.from({ length: 16 }, (_, i) => i));
  assert.deepEqual(drops, ['surfaces']);
  assert.equal(fanout.dropped, 4);
  push(frame(2, { surface: 3, count: 1 }));
  assert.equal(sink.sent.length, 17, 'the tracked ones go on');
  fanout.reset();
  push(frame(1, { keyframe: true, surface: 19, count: 1 }));
  assert.equal(parseFragment(sink.sent.at(-1)).surface, 19, 'a new upstream starts counting afresh');
});

test('memory stays bounded however many frames go by', () => {
  const { fanout, push } = harness();
  const sink = new FakeSink();
  fanout.add('v', sink);
  for (let seq = 0; seq < 500; seq++) push(frame(seq, { keyframe: seq % 50 === 0, count: 2 }));
  const surface = fanout._surfaces.get(0);
  assert.equal(surface.frames.size, 8, 'frames tracked');
  assert.equal([...surface.frames.values()].filter((f) => f.messages !== null).length, 2, 'frames kept');
  assert.ok(fanout._viewers.get('v').surfaces.get(0).decisions.size <= 16);
});

test('add: what the viewer started on, so only the other surfaces need a keyframe from upstream', () => {
  const { fanout, push } = harness();
  push(frame(5, { keyframe: true, surface: 0 }), frame(6, { surface: 0 }));
  push(frame(7, { surface: 1 }), frame(8, { surface: 1 }));
  push(frame(1, { keyframe: true, surface: 2 }), frame(2, { surface: 2 }), frame(3, { surface: 2 }));
  const sink = new FakeSink();
  assert.deepEqual(fanout.add('v', sink), [0], 'surface 1 has no keyframe; surface 2 no longer a kept one');
  assert.deepEqual(sink.take(), ['5:0', '5:1', '5:2', '6:0', '6:1', '6:2']);
  assert.deepEqual(fanout.add('w', new FakeSink()), [0]);
  assert.deepEqual(harness().fanout.add('x', new FakeSink()), [], 'nothing yet');
});

test('onKeyframe: once per keyframe, at whichever of its fragments comes first', () => {
  const { push, keyframes } = harness();
  const key = frame(1, { keyframe: true, surface: 4 });
  push(key[2], key[0], key[1], frame(2, { surface: 4 }), frame(3, { keyframe: true, surface: 0 }));
  assert.deepEqual(keyframes, [4, 0]);
});

test('resetSurface: a new config on the same upstream, whose frame numbers start over', () => {
  const { fanout, push, requests, skipped } = harness();
  const sink = new FakeSink();
  fanout.add('v', sink);
  push(frame(1000, { keyframe: true }), frame(1001), frame(1, { keyframe: true, surface: 1 }));
  sink.take();
  push(frame(0, { keyframe: true }), frame(1));
  assert.deepEqual(sink.take(), [], 'without a reset, lower numbers are old');
  fanout.resetSurface(0);
  push(frame(0), frame(1));
  assert.deepEqual(sink.take(), [], 'after it, the viewer waits for a keyframe');
  push(frame(2, { keyframe: true }), frame(3));
  assert.deepEqual(sink.take(), ['2:0', '2:1', '2:2', '3:0', '3:1', '3:2']);
  push(frame(2, { surface: 1 }));
  assert.deepEqual(sink.take(), ['2:0', '2:1', '2:2'], 'other surfaces go on as they were');
  const late = new FakeSink();
  assert.deepEqual(fanout.add('w', late).sort(), [0, 1], 'kept frames of the new numbering start a new viewer');
  assert.deepEqual(requests, []);
  assert.deepEqual(skipped, []);
});

test('keyframe requests: at most one per 250 ms per surface, a request inside that deferred, not lost', () => {
  const sent = [];
  const requests = new KeyframeRequests({ send: (surface) => sent.push([timers.now, surface]), now: () => timers.now });
  requests.request(0);
  assert.deepEqual(sent, [[0, 0]]);
  timers.tick(100);
  requests.request(0);
  timers.tick(50);
  requests.request(0);
  requests.request(1);
  assert.deepEqual(sent, [[0, 0], [150, 1]], 'surface 1 has its own limit');
  timers.tick(99);
  assert.equal(sent.length, 2);
  timers.tick(1);
  assert.deepEqual(sent.at(-1), [250, 0], 'one for both requests, at the end of the interval');
  timers.tick(1000);
  assert.equal(sent.length, 3);
  requests.request(0);
  assert.deepEqual(sent.at(-1), [1250, 0], 'long after: at once');
  timers.tick(10);
  requests.request(0);
  requests.clear();
  timers.tick(1000);
  assert.equal(sent.length, 4, 'clear() drops a deferred request');
});

test('keyframe requests: a keyframe arriving meanwhile serves a deferred request; reset() forgets the last', () => {
  const sent = [];
  const requests = new KeyframeRequests({ send: (surface) => sent.push([timers.now, surface]), now: () => timers.now });
  requests.request(0);
  requests.request(1);
  timers.tick(100);
  requests.request(0);
  requests.request(1);
  requests.keyframeSeen(0);
  requests.keyframeSeen(2); // nothing deferred for it: nothing happens
  timers.tick(1000);
  assert.deepEqual(sent, [[0, 0], [0, 1], [250, 1]], 'surface 0 got its keyframe; surface 1 asked at 250 ms');
  requests.request(0);
  assert.deepEqual(sent.at(-1), [1100, 0]);
  timers.tick(10);
  requests.request(0);
  requests.reset();
  assert.equal(sent.length, 4);
  requests.request(0);
  assert.deepEqual(sent.at(-1), [1110, 0], 'a new upstream was asked nothing yet: at once');
  timers.tick(1000);
  assert.equal(sent.length, 5, 'and the deferred request of the old upstream is gone');
});

const IV = 'AAECAwQFBgcICQoL';
const BOX = '_hsDpK_kqEbPR6U5ctBG16IqGGz6tL9sZg7RnikR17dmMvbL4mdBEuJdrLoEoXCymoS1xPSAKMyapce78f710UNmIZxi1B1u';

test('parseDownstream: keyframe.request, relayed (its known fields only) and relay.viewers', () => {
  assert.deepEqual(parseDownstream('{"type":"keyframe.request","surface":2,"x":1}'), {
    ok: true,
    msg: { type: 'keyframe.request', surface: 2 },
  });
  const text = `{"z":0,"type":"relayed", "box":"${BOX}","from":"p1","seq":7,"iv":"${IV}","msg":"{}","mac":"abc"}`;
  const parsed = parseDownstream(text);
  assert.deepEqual(parsed, { ok: true, msg: { type: 'relayed', from: 'p1', seq: 7, iv: IV, box: BOX } });
  // What a relay passes upstream is this, serialized afresh: nothing else of what the viewer sent.
  assert.equal(JSON.stringify(parsed.msg), `{"type":"relayed","from":"p1","seq":7,"iv":"${IV}","box":"${BOX}"}`);
  let nested = '0';
  for (let i = 0; i < 1000; i++) nested = `[${nested}]`;
  const deep = parseDownstream(`{"type":"relayed","from":"p1","seq":1,"iv":"${IV}","box":"AAAA","extra":${nested}}`);
  assert.equal(deep.ok, true);
  assert.deepEqual(Object.keys(deep.msg), ['type', 'from', 'seq', 'iv', 'box'], 'the nested extra stays behind');
  assert.deepEqual(parseDownstream('{"type":"relay.viewers","peers":["a","b","a"]}'), {
    ok: true,
    msg: { type: 'relay.viewers', peers: ['a', 'b'] },
  });
  assert.deepEqual(parseDownstream('{"type":"relay.viewers","peers":[]}').msg.peers, []);
});

test('parseDownstream: envelopes are bounded as impromptu/envelope.py bounds them', () => {
  const env = (fields) => JSON.stringify({ type: 'relayed', from: 'p1', seq: 1, iv: IV, box: BOX, ...fields });
  assert.equal(parseDownstream(env({ from: 'x'.repeat(256) })).ok, true, '256 characters of peer id');
  assert.equal(parseDownstream(env({ seq: 2 ** 53 - 1 })).ok, true, 'the largest safe integer');
  assert.equal(parseDownstream(env({ box: 'A' })).ok, true, 'one character of box');
  assert.equal(MAX_BOX, 5486, 'as Python’s (MAX_MESSAGE + 16) * 4 // 3 + 4');
  assert.equal(parseDownstream(env({ box: '-'.repeat(MAX_BOX) })).ok, true, `${MAX_BOX} characters of box`);
  // The longest envelope fits the downstream limit for everything but relay.viewers.
  const longest = env({ from: 'x'.repeat(256), seq: 2 ** 53 - 1, box: '-'.repeat(MAX_BOX) });
  assert.ok(longest.length < MAX_DOWNSTREAM_TEXT, `${longest.length} characters`);
  assert.equal(parseDownstream(longest).ok, true);
  const bad = [
    [env({ from: '' }), 'relayed.from'],
    [env({ from: 'x'.repeat(257) }), 'relayed.from'],
    [env({ from: 5 }), 'relayed.from'],
    [env({ from: undefined }), 'relayed.from'],
    [env({ seq: 0 }), 'relayed.seq'],
    [env({ seq: -1 }), 'relayed.seq'],
    [env({ seq: 1.5 }), 'relayed.seq'],
    [env({ seq: '1' }), 'relayed.seq'],
    [env({ seq: true }), 'relayed.seq'],
    [env({ seq: 2 ** 53 }), 'relayed.seq'],
    [env({ iv: undefined }), 'relayed.iv'],
    [env({ iv: IV.slice(1) }), 'relayed.iv'],
    [env({ iv: `${IV}A` }), 'relayed.iv'],
    [env({ iv: `${IV.slice(1)}=` }), 'relayed.iv'],
    [env({ iv: `${IV.slice(1)}+` }), 'relayed.iv'],
    [env({ iv: `${IV}\n` }), 'relayed.iv'],
    [env({ iv: 12 }), 'relayed.iv'],
    [env({ box: undefined }), 'relayed.box'],
    [env({ box: '' }), 'relayed.box'],
    [env({ box: '-'.repeat(MAX_BOX + 1) }), 'relayed.box'],
    [env({ box: `${BOX}=` }), 'relayed.box'],
    [env({ box: `${BOX}\n` }), 'relayed.box'],
    [env({ box: 'a/b+' }), 'relayed.box'],
    [env({ box: ['AAAA'] }), 'relayed.box'],
    // The old MACed shape is refused: a relay passes on nothing it cannot check the shape of.
    ['{"type":"relayed","from":"p1","seq":1,"msg":"{}","mac":"m"}', 'relayed.iv'],
  ];
  for (const [text, reason] of bad) assert.deepEqual(parseDownstream(text), { ok: false, reason }, text.slice(0, 80));
});

test('parseDownstream drops malformed messages and role-needing ones sent bare, with fixed reasons', () => {
  const tooMany = Array.from({ length: 1025 }, (_, i) => `p${i}`);
  const bad = [
    ['nope', 'not JSON'],
    ['[1]', 'not an object with a type'],
    ['{"type":"keyframe.request"}', 'keyframe.request.surface'],
    ['{"type":"keyframe.request","surface":65536}', 'keyframe.request.surface'],
    ['{"type":"relay.viewers"}', 'relay.viewers.peers'],
    ['{"type":"relay.viewers","peers":[""]}', 'relay.viewers.peers'],
    ['{"type":"relay.viewers","peers":[7]}', 'relay.viewers.peers'],
    [JSON.stringify({ type: 'relay.viewers', peers: tooMany }), 'relay.viewers.peers'],
    [JSON.stringify({ type: 'keyframe.request', surface: 0, pad: 'x'.repeat(9000) }), 'too long'],
  ];
  for (const [text, reason] of bad) assert.deepEqual(parseDownstream(text), { ok: false, reason }, text.slice(0, 80));
  assert.deepEqual(parseDownstream(new ArrayBuffer(2)), { ok: false, reason: 'not text' });
  // Whatever type a viewer makes up, the reason (a relay's log-once key) is one of a fixed few; the type is detail.
  const named = [
    ['{"type":"input.move","x":1,"y":2}', 'bare', '"input.move"'],
    ['{"type":"input.release"}', 'bare', '"input.release"'],
    ['{"type":"control.request"}', 'bare', '"control.request"'],
    ['{"type":"control.hello"}', 'bare', '"control.hello"'],
    [`{"type":"input.${'x'.repeat(100)}"}`, 'bare', JSON.stringify(`input.${'x'.repeat(34)}`)],
    ['{"type":"config"}', 'unknown type', '"config"'],
    [JSON.stringify({ type: 'z'.repeat(1000) }), 'unknown type', JSON.stringify('z'.repeat(40))],
  ];
  for (const [text, reason, detail] of named) {
    assert.deepEqual(parseDownstream(text), { ok: false, reason, detail }, text.slice(0, 80));
  }
});

test('parseDownstream: a relay.viewers of 1024 ids passes, up to 300 KiB; nothing else over 8 KiB', () => {
  assert.equal(MAX_DOWNSTREAM_TEXT, 8192);
  assert.equal(MAX_REPORT_TEXT, 300 * 1024);
  // The server's ids (16 hex digits): about 20 KB.
  const real = Array.from({ length: 1024 }, (_, i) => i.toString(16).padStart(16, '0'));
  const realText = JSON.stringify({ type: 'relay.viewers', peers: real });
  assert.ok(realText.length > MAX_DOWNSTREAM_TEXT && realText.length < 64 * 1024, `${realText.length}`);
  assert.equal(parseDownstream(realText).msg.peers.length, 1024);
  // The longest ids any page accepts (256 characters).
  const longest = Array.from({ length: 1024 }, (_, i) => String(i).padStart(256, 'x'));
  const longestText = JSON.stringify({ type: 'relay.viewers', peers: longest });
  assert.ok(longestText.length <= MAX_REPORT_TEXT, `${longestText.length}`);
  assert.equal(parseDownstream(longestText).msg.peers.length, 1024);
  const padded = JSON.stringify({ type: 'relay.viewers', peers: [], pad: 'x'.repeat(MAX_REPORT_TEXT) });
  assert.deepEqual(parseDownstream(padded), { ok: false, reason: 'too long' });
  const big = JSON.stringify({ type: 'relayed', from: 'p1', seq: 1, iv: IV, box: BOX, pad: 'x'.repeat(9000) });
  assert.deepEqual(parseDownstream(big), { ok: false, reason: 'too long' });
  const bigUnknown = JSON.stringify({ type: 'what', pad: 'x'.repeat(20000) });
  assert.deepEqual(parseDownstream(bigUnknown), { ok: false, reason: 'too long' });
});

const PRESENCE = {
  type: 'presence',
  you: 'relay1',
  role: 'control',
  viewers: 5,
  controllers: 2,
  mode: 'one',
  holder: 'a',
  requests: ['b'],
  relayed: { a: 'control', b: 'view', c: 'control', d: 'view' },
};

test('presenceFor: you and role of that viewer, relayed narrowed to what it reported', () => {
  const before = structuredClone(PRESENCE);
  assert.deepEqual(presenceFor(PRESENCE, 'a', []), { ...PRESENCE, you: 'a', role: 'control', relayed: {} });
  assert.deepEqual(presenceFor(PRESENCE, 'b', new Set(['c', 'd', 'zz'])), {
    ...PRESENCE,
    you: 'b',
    role: 'view',
    relayed: { c: 'control', d: 'view' },
  });
  assert.equal(presenceFor(PRESENCE, 'nobody', []).role, 'view', 'not (yet) in relayed: view');
  assert.equal(presenceFor(PRESENCE, 'toString', []).role, 'view', 'prototype names are not entries');
  const { relayed, ...plain } = PRESENCE;
  assert.deepEqual(presenceFor(plain, 'a', ['c']), { ...plain, you: 'a', role: 'view', relayed: {} });
  assert.deepEqual(PRESENCE, before, 'the upstream presence is not changed');
  assert.equal(relayed.a, 'control');
});

test('ViewerBook: whose envelopes pass, and the viewers reported upstream when they change', () => {
  const book = new ViewerBook();
  assert.equal(book.takeReport(), null, 'nobody, and a new upstream assumes nobody');
  book.add('v1');
  book.add('r2'); // a chained relay
  assert.equal(book.mayRelay('v1', 'v1'), true);
  assert.equal(book.mayRelay('v1', 'r2'), false, 'not another of our viewers');
  assert.equal(book.mayRelay('x', 'x'), false, 'not a viewer of ours');
  book.setReported('r2', ['w1', 'w2']);
  assert.equal(book.mayRelay('r2', 'w1'), true);
  assert.equal(book.mayRelay('v1', 'w1'), false, 'only the relay that serves w1');
  assert.deepEqual([...book.reported('r2')], ['w1', 'w2']);
  assert.deepEqual(book.takeReport(), { type: 'relay.viewers', peers: ['v1', 'r2', 'w1', 'w2'] });
  assert.equal(book.takeReport(), null, 'unchanged');
  book.setReported('r2', ['w2', 'w1', 'v1']);
  assert.equal(book.takeReport(), null, 'the same set in another order');
  book.setReported('r2', ['w2']);
  assert.deepEqual(book.takeReport().peers, ['v1', 'r2', 'w2']);
  book.forgetReport();
  assert.deepEqual(book.takeReport().peers, ['v1', 'r2', 'w2'], 'a new upstream is told');
  book.remove('r2');
  assert.equal(book.mayRelay('r2', 'w2'), false);
  book.setReported('r2', ['w9']);
  assert.equal(book.has('r2'), false, 'reports of a viewer that is gone are ignored');
  assert.deepEqual(book.takeReport().peers, ['v1']);
  book.remove('v1');
  assert.deepEqual(book.takeReport(), { type: 'relay.viewers', peers: [] }, 'the last one left');
});

test('ViewerBook reports at most 1024 peers, and says so once', () => {
  const logs = [];
  const book = new ViewerBook({ log: (key) => logs.push(key) });
  for (let r = 0; r < 3; r++) {
    book.add(`r${r}`);
    book.setReported(`r${r}`, Array.from({ length: 500 }, (_, i) => `r${r}w${i}`));
  }
  assert.equal(book.takeReport().peers.length, 1024);
  assert.deepEqual(logs, ['relay.viewers:truncated']);
});

test('parseShow: ?show=0 relays without decoding, 1 or nothing shows the stream, anything else is refused', () => {
  assert.deepEqual(parseShow(''), { ok: true, show: true });
  assert.deepEqual(parseShow('?max=3&show=1'), { ok: true, show: true });
  assert.deepEqual(parseShow('?show=0'), { ok: true, show: false });
  const bad = parseShow('?show=no');
  assert.equal(bad.ok, false);
  assert.match(bad.reason, /show=no/);
});
