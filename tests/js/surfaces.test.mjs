// node --test tests/js/ — several surfaces on one video channel (docs/protocol.md §8): one Reassembler and one
// decoder per surface, fragments routed by their header, the selection, states, and the tab strip's model.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Reassembler, fragmentFrame } from '../../impromptu/web/lib/protocol.js';
import {
  EARLY_MAX,
  SHORTCUT,
  SurfaceSet,
  surfaceOverlay,
  surfaceShortcut,
  tabKeyTarget,
  tabLabel,
  tabModel,
} from '../../impromptu/web/lib/surfaces.js';

/** A decoder that records what it was given. */
class FakeDecoder {
  constructor(surface) {
    this.surface = surface;
    this.configs = [];
    this.frames = [];
    this.framesDecoded = 0;
    this.accept = true;
    this.closed = false;
  }
  close() {
    this.closed = true;
  }
  configure(config) {
    this.configs.push(config);
  }
  decode(frame) {
    this.frames.push(frame);
    if (this.accept) this.framesDecoded += 1;
    return this.accept;
  }
}

function harness() {
  const clock = { t: 0 };
  const requests = [];
  const decoders = new Map();
  const reassemblers = [];
  const drops = [];
  let changes = 0;
  const set = new SurfaceSet({
    createReassembler: (surface) => {
      const r = new Reassembler({ surface, now: () => clock.t, onKeyframeRequest: () => requests.push(surface) });
      reassemblers.push(r);
      return r;
    },
    createDecoder: (surface) => {
      const d = new FakeDecoder(surface);
      decoders.set(surface, d);
      return d;
    },
    onChange: () => (changes += 1),
    onDrop: (reason) => drops.push(reason),
  });
  return { set, clock, requests, decoders, reassemblers, drops, changes: () => changes };
}

const config = (surface, extra = {}) => ({ type: 'config', surface, codec: 'vp8', width: 640 + surface * 2, height: 480, fps: 30, ...extra });
const bytes = (n, seed) => Uint8Array.from({ length: n }, (_, i) => (i + seed) & 0xff);
const frame = (surface, seq, keyframe = seq === 0) => fragmentFrame({ surface, seq, keyframe }, bytes(40000, surface * 10 + seq));
const pushAll = (set, fragments) => fragments.map((f) => set.push(f)).filter((s) => s !== null);

test('each surface gets its own Reassembler and decoder on its first config; the first configured is selected', () => {
  const h = harness();
  assert.equal(h.set.selected, null);
  h.set.configure(config(2, { title: 'B' }));
  h.set.configure(config(1, { title: 'A' }));
  assert.deepEqual(h.set.list.map((s) => s.surface), [1, 2], 'by number');
  assert.equal(h.set.selected.surface, 2, 'the first configured');
  assert.deepEqual([...h.decoders.keys()], [2, 1]);
  assert.equal(h.decoders.get(1).configs[0].width, 642);
  assert.equal(h.reassemblers.length, 2);
  assert.deepEqual(h.reassemblers.map((r) => r.surface), [2, 1]);
  assert.equal(h.set.get(1).title, 'A');
});

test('fragments are routed by their header’s surface, interleaved, to that surface’s decoder', () => {
  const h = harness();
  h.set.configure(config(1));
  h.set.configure(config(2));
  const a = frame(1, 0);
  const b = frame(2, 0);
  assert.ok(a.length > 1 && b.length > 1);
  const mixed = [a[0], b[0], b[1], a[1], ...a.slice(2), ...b.slice(2)];
  const decodedBy = pushAll(h.set, mixed).map((s) => s.surface);
  assert.deepEqual(decodedBy.sort(), [1, 2]);
  assert.equal(h.decoders.get(1).frames.length, 1);
  assert.deepEqual(h.decoders.get(1).frames[0].data, bytes(40000, 10));
  assert.deepEqual(h.decoders.get(2).frames[0].data, bytes(40000, 20));
  // Each surface numbers its own frames: surface 2's seq 1 is no gap for surface 1.
  pushAll(h.set, frame(2, 1));
  pushAll(h.set, frame(1, 1));
  assert.equal(h.decoders.get(1).framesDecoded, 2);
  assert.equal(h.decoders.get(2).framesDecoded, 2);
  assert.deepEqual(h.requests, []);
});

test('video before its surface’s config is held, then replayed; beyond the bound it is dropped', () => {
  const h = harness();
  h.set.configure(config(1));
  pushAll(h.set, frame(2, 0)); // surface 2's config is still on its way
  assert.equal(h.decoders.has(2), false);
  h.set.configure(config(2));
  assert.equal(h.decoders.get(2).framesDecoded, 1, 'its first keyframe was kept');

  const g = harness();
  for (let i = 0; i < EARLY_MAX + 3; i++) g.set.push(frame(5, 0)[0]);
  assert.deepEqual(g.drops, ['early', 'early', 'early']);
});

test('keyframe requests name the surface that lost something', () => {
  const h = harness();
  h.set.configure(config(1));
  h.set.configure(config(2));
  pushAll(h.set, frame(1, 0));
  pushAll(h.set, frame(2, 0));
  pushAll(h.set, frame(2, 2)); // seq 1 of surface 2 never came
  assert.deepEqual(h.requests, [2]);
  assert.equal(h.decoders.get(2).framesDecoded, 1, 'the delta after the gap is withheld');
  h.decoders.get(1).accept = false; // surface 1's decoder is behind: it needs a keyframe
  pushAll(h.set, frame(1, 1));
  assert.deepEqual(h.requests, [2, 1]);
  h.clock.t += 600;
  h.set.tick();
  assert.deepEqual(h.requests, [2, 1, 1, 2]);
});

test('a later config starts the surface afresh; `fresh` (behind a relay) makes a new Reassembler', () => {
  const h = harness();
  h.set.configure(config(1));
  pushAll(h.set, frame(1, 0));
  pushAll(h.set, frame(1, 1));
  h.set.configure(config(1, { width: 800 }));
  assert.equal(h.reassemblers.length, 1);
  assert.equal(h.decoders.get(1).configs.at(-1).width, 800);
  assert.equal(h.set.get(1).config.width, 800);
  assert.equal(pushAll(h.set, frame(1, 2, false)).length, 0, 'a delta after a config: waits for a keyframe');
  assert.equal(pushAll(h.set, frame(1, 3, true)).length, 1);
  h.set.configure(config(1), { fresh: true });
  assert.equal(h.reassemblers.length, 2);
  assert.equal(pushAll(h.set, frame(1, 0)).length, 1, 'a restarted desktop’s frame 0 is not refused as old');
});

test('a title is kept when a later config has none', () => {
  const h = harness();
  h.set.configure(config(1, { title: 'editor' }));
  h.set.configure(config(1));
  assert.equal(h.set.get(1).title, 'editor');
  h.set.configure(config(1, { title: 'editor*' }));
  assert.equal(h.set.get(1).title, 'editor*');
});

test('a config that only renames the window relabels its tab: the decoder and the frame numbering go on', () => {
  for (const fresh of [false, true]) {
    const h = harness();
    h.set.configure(config(1, { title: 'vim a.txt' }));
    h.set.configure(config(2, { title: 'xterm' }));
    pushAll(h.set, frame(1, 0));
    pushAll(h.set, frame(1, 1));
    const changes = h.changes();
    h.set.configure(config(1, { title: 'vim b.txt' }), { fresh });
    assert.equal(h.set.get(1).title, 'vim b.txt');
    assert.equal(h.set.get(1).config.title, 'vim b.txt');
    assert.equal(tabModel(h.set).tabs[0].label, 'vim b.txt', 'the tab says the new title');
    assert.ok(h.changes() > changes, 'the page is told, to redraw the tab');
    assert.equal(h.decoders.get(1).configs.length, 1, 'the decoder is not configured again');
    assert.equal(h.set.get(1).starts, 1);
    assert.equal(h.reassemblers.length, 2, 'no new Reassembler, even behind a relay');
    assert.equal(h.reassemblers[0].waitingForKeyframe, false, 'nor one waiting for a keyframe');
    assert.equal(pushAll(h.set, frame(1, 2, false)).length, 1, 'the next delta frame decodes');
    assert.equal(h.set.get(1).framesDecoded, 3);
    h.clock.t += 2000;
    h.set.tick();
    assert.deepEqual(h.requests.filter((n) => n === 1), [], 'no keyframe is asked for');
    // The same config again (behind a relay: maybe a new upstream) and a new size still start it afresh.
    h.set.configure(config(1, { title: 'vim b.txt' }), { fresh });
    assert.equal(h.decoders.get(1).configs.length, 2);
    assert.equal(h.set.get(1).starts, 2);
    assert.equal(pushAll(h.set, frame(1, 3, false)).length, 0, 'then a delta waits for a keyframe');
    h.set.configure(config(1, { title: 'vim c.txt', width: 1000 }), { fresh });
    assert.equal(h.decoders.get(1).configs.length, 3);
    assert.equal(h.set.get(1).title, 'vim c.txt');
  }
});

test('surfaceShortcut: Ctrl+Alt+PageUp / PageDown and nothing else', () => {
  const key = (key, mods = {}) => ({ key, ctrlKey: true, altKey: true, shiftKey: false, metaKey: false, ...mods });
  assert.equal(surfaceShortcut(key('PageUp')), -1);
  assert.equal(surfaceShortcut(key('PageDown')), 1);
  assert.equal(surfaceShortcut(key('PageDown', { ctrlKey: false })), null, 'Alt+PageDown is the remote app’s');
  assert.equal(surfaceShortcut(key('PageDown', { altKey: false })), null, 'Ctrl+PageDown is the remote app’s');
  assert.equal(surfaceShortcut(key('PageDown', { shiftKey: true })), null);
  assert.equal(surfaceShortcut(key('PageDown', { metaKey: true })), null);
  assert.equal(surfaceShortcut(key('ArrowRight')), null);
  assert.equal(surfaceShortcut(key('Tab')), null);
  assert.match(SHORTCUT.keys, /^Control\+Alt\+PageUp Control\+Alt\+PageDown$/);
});

test('select: only an existing surface; a change is reported', () => {
  const h = harness();
  h.set.configure(config(1));
  h.set.configure(config(2));
  const before = h.changes();
  assert.equal(h.set.select(3), false);
  assert.equal(h.set.selected.surface, 1);
  assert.equal(h.set.select(2), true);
  assert.equal(h.set.selected.surface, 2);
  assert.equal(h.changes(), before + 1);
  assert.equal(h.set.select(2), true);
  assert.equal(h.changes(), before + 1, 'selecting the selected one again changes nothing');
});

test('surface.state: paused keeps the picture and stops asking; live again waits for a keyframe; ended is final', () => {
  const h = harness();
  h.set.configure(config(1));
  pushAll(h.set, frame(1, 0));
  h.set.setState({ type: 'surface.state', surface: 1, state: 'paused', reason: 'the window is minimised' });
  assert.equal(h.set.get(1).state, 'paused');
  assert.equal(h.set.get(1).reason, 'the window is minimised');
  h.set.needKeyframe(1);
  const asked = h.requests.length;
  h.clock.t += 5000;
  h.set.tick();
  assert.equal(h.requests.length, asked, 'a paused window sends nothing: no repeated requests');
  h.set.setState({ type: 'surface.state', surface: 1, state: 'live', reason: '' });
  assert.equal(h.set.get(1).reason, '');
  assert.equal(pushAll(h.set, frame(1, 1, false)).length, 0, 'after a pause, the next frame used is a keyframe');
  assert.equal(pushAll(h.set, frame(1, 2, true)).length, 1);

  h.set.setState({ type: 'surface.state', surface: 1, state: 'ended', reason: 'the window was destroyed' });
  assert.equal(h.set.get(1).framesDecoded, 2, 'its last picture stays');
  assert.equal(h.decoders.get(1).closed, true, 'its decoder is closed');
  assert.equal(pushAll(h.set, frame(1, 3, true)).length, 0);
  assert.ok(h.drops.length > 0 && h.drops.every((r) => r === 'ended'), h.drops.join());
  h.set.setState({ type: 'surface.state', surface: 1, state: 'live', reason: '' });
  h.set.configure(config(1));
  assert.equal(h.set.get(1).state, 'ended', 'an ended surface does not come back');
});

test('a surface.state before its config is applied with the config', () => {
  const h = harness();
  h.set.setState({ type: 'surface.state', surface: 3, state: 'paused', reason: 'unmapped' });
  assert.equal(h.set.get(3), null);
  h.set.configure(config(3));
  assert.equal(h.set.get(3).state, 'paused');
  assert.equal(h.set.get(3).reason, 'unmapped');
});

test('disconnect: surfaces stay; the next config makes a new Reassembler and a paused one is live until told', () => {
  const h = harness();
  h.set.configure(config(1));
  h.set.configure(config(2));
  pushAll(h.set, frame(1, 0));
  pushAll(h.set, frame(1, 1));
  h.set.setState({ type: 'surface.state', surface: 2, state: 'paused', reason: 'minimised' });
  h.set.push(frame(3, 0)[0]); // early video of the old connection
  h.set.disconnect();
  assert.equal(h.set.list.length, 2);
  h.set.configure(config(3));
  assert.equal(h.decoders.get(3).frames.length, 0, 'early video of the old connection is forgotten');
  h.set.configure(config(1));
  h.set.configure(config(2));
  assert.equal(h.set.get(2).state, 'live');
  assert.equal(pushAll(h.set, frame(1, 0)).length, 1, 'the new connection numbers frames afresh');
  assert.equal(h.set.get(1).framesDecoded, 3);
});

test('tabModel: no strip for one surface; labels, markers and the selection for several', () => {
  const h = harness();
  assert.deepEqual(tabModel(h.set), { visible: false, tabs: [] });
  h.set.configure(config(0));
  assert.equal(tabModel(h.set).visible, false, 'the whole display alone: the page as it always was');
  const g = harness();
  g.set.configure(config(1, { title: 'xterm A' }));
  g.set.configure(config(2));
  g.set.configure(config(3, { title: 'gone' }));
  g.set.setState({ type: 'surface.state', surface: 2, state: 'paused', reason: 'the window is minimised' });
  g.set.setState({ type: 'surface.state', surface: 3, state: 'ended', reason: 'destroyed' });
  g.set.select(2);
  const m = tabModel(g.set);
  assert.equal(m.visible, true);
  assert.deepEqual(m.tabs, [
    { surface: 1, label: 'xterm A', tooltip: 'xterm A', state: 'live', marker: '', selected: false },
    { surface: 2, label: 'Window 2', tooltip: 'Window 2 — the window is minimised', state: 'paused', marker: 'paused', selected: true },
    { surface: 3, label: 'gone', tooltip: 'gone — this window was closed', state: 'ended', marker: 'closed', selected: false },
  ]);
});

test('tabLabel and surfaceOverlay', () => {
  assert.equal(tabLabel({ surface: 0, title: '' }), 'Desktop');
  assert.equal(tabLabel({ surface: 4, title: '' }), 'Window 4');
  assert.equal(tabLabel({ surface: 4, title: 'vim' }), 'vim');
  assert.equal(surfaceOverlay(null), null);
  assert.equal(surfaceOverlay({ state: 'live', reason: '' }), null);
  assert.deepEqual(surfaceOverlay({ state: 'paused', reason: 'the window is minimised' }), { text: 'Paused — the window is minimised', dim: true });
  assert.deepEqual(surfaceOverlay({ state: 'paused', reason: '' }), { text: 'Paused', dim: true });
  assert.deepEqual(surfaceOverlay({ state: 'ended', reason: 'x' }), { text: 'This window was closed', dim: true });
});

test('tabKeyTarget: arrows wrap, Home and End, other keys are not the strip’s', () => {
  const n = [1, 2, 5];
  assert.equal(tabKeyTarget(n, 1, 'ArrowRight'), 2);
  assert.equal(tabKeyTarget(n, 5, 'ArrowRight'), 1);
  assert.equal(tabKeyTarget(n, 1, 'ArrowLeft'), 5);
  assert.equal(tabKeyTarget(n, 2, 'Home'), 1);
  assert.equal(tabKeyTarget(n, 2, 'End'), 5);
  assert.equal(tabKeyTarget(n, 2, 'a'), null);
  assert.equal(tabKeyTarget(n, 9, 'ArrowRight'), null);
});
