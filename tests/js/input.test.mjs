// node --test tests/js/ — the pure arithmetic of input.js: canvas → surface coordinates and wheel notches.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { WheelAccumulator, mapToSurface, xButton } from '../../impromptu/web/lib/input.js';

test('mapToSurface: exact fit', () => {
  const rect = { left: 0, top: 28, width: 1280, height: 720 };
  assert.deepEqual(mapToSurface(0, 28, rect, 1280, 720), { x: 0, y: 0 });
  assert.deepEqual(mapToSurface(640.5, 388.9, rect, 1280, 720), { x: 640, y: 360 });
  assert.deepEqual(mapToSurface(1279.9, 747.9, rect, 1280, 720), { x: 1279, y: 719 });
});

test('mapToSurface: letterboxed (bars left and right), scaled down', () => {
  // 1920×1080 shown in a 1000×400 box: scale 0.37037, picture 711.1 wide, offset 144.4.
  const rect = { left: 0, top: 0, width: 1000, height: 400 };
  assert.deepEqual(mapToSurface(500, 200, rect, 1920, 1080), { x: 960, y: 540 });
  assert.deepEqual(mapToSurface(145, 0, rect, 1920, 1080), { x: 1, y: 0 });
  assert.deepEqual(mapToSurface(10, 200, rect, 1920, 1080), { x: 0, y: 540 }, 'in the bar: clamped');
  assert.deepEqual(mapToSurface(990, 399.99, rect, 1920, 1080), { x: 1919, y: 1079 });
});

test('mapToSurface: letterboxed (bars top and bottom), scaled up', () => {
  const rect = { left: 10, top: 20, width: 1600, height: 1600 };
  // 800×600 → scale 2, picture 1600×1200 at y offset 200.
  assert.deepEqual(mapToSurface(10 + 3, 20 + 200 + 5, rect, 800, 600), { x: 1, y: 2 });
  assert.deepEqual(mapToSurface(10 + 800, 20 + 100, rect, 800, 600), { x: 400, y: 0 });
  assert.deepEqual(mapToSurface(10 + 800, 20 + 1590, rect, 800, 600), { x: 400, y: 599 });
});

test('mapToSurface: clamps outside the canvas (dragging with the pointer captured)', () => {
  const rect = { left: 0, top: 0, width: 640, height: 480 };
  assert.deepEqual(mapToSurface(-50, -50, rect, 640, 480), { x: 0, y: 0 });
  assert.deepEqual(mapToSurface(5000, 5000, rect, 640, 480), { x: 639, y: 479 });
});

test('xButton maps DOM buttons to X buttons', () => {
  assert.equal(xButton(0), 1);
  assert.equal(xButton(1), 2);
  assert.equal(xButton(2), 3);
  assert.equal(xButton(3), null);
  assert.equal(xButton(4), null);
});

test('wheel: one notch per 100 px, per 3 lines, per page', () => {
  const w = new WheelAccumulator();
  assert.deepEqual(w.add(0, 100, 0), { dx: 0, dy: 1 });
  assert.deepEqual(w.add(0, -300, 0), { dx: 0, dy: -3 });
  assert.deepEqual(w.add(0, 3, 1), { dx: 0, dy: 1 });
  assert.deepEqual(w.add(-6, 0, 1), { dx: -2, dy: 0 });
  assert.deepEqual(w.add(0, 1, 2), { dx: 0, dy: 1 });
});

test('wheel: small deltas (touchpads) add up; reversing starts afresh', () => {
  const w = new WheelAccumulator();
  const sent = [];
  for (let i = 0; i < 10; i++) sent.push(w.add(0, 25).dy);
  assert.equal(sent.reduce((a, b) => a + b, 0), 2);
  assert.deepEqual(w.add(0, -25), { dx: 0, dy: 0 });
  assert.deepEqual(w.add(0, -80), { dx: 0, dy: -1 });
});

test('wheel: a coarse click smaller than 100 px is still one notch (Chromium on Linux: 53 px)', () => {
  const w = new WheelAccumulator();
  assert.equal(w.add(0, 53).dy, 1);
  assert.equal(w.add(0, 53).dy, 1);
});

test('wheel: clamped to −10…10 per message', () => {
  const w = new WheelAccumulator();
  assert.deepEqual(w.add(0, 5000), { dx: 0, dy: 10 });
  assert.deepEqual(w.add(0, 100), { dx: 0, dy: 1 }, 'the excess is forgotten, not queued');
  assert.deepEqual(w.add(-99999, 0), { dx: -10, dy: 0 });
  assert.ok(!Object.is(w.add(0, -10).dy, -0));
});
