// node --test tests/js/ — the pure arithmetic of input.js: canvas → surface coordinates and wheel notches.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { InputCapture, WheelAccumulator, mapToSurface, xButton } from '../../impromptu/web/lib/input.js';

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

/** An InputCapture on a fake canvas (node's EventTarget), with just enough of a page around it. */
function capture(surface, reserved = undefined) {
  const names = ['document', 'window', 'requestAnimationFrame', 'cancelAnimationFrame'];
  const saved = Object.fromEntries(names.map((n) => [n, globalThis[n]]));
  const frames = [];
  Object.assign(globalThis, {
    document: new EventTarget(),
    window: new EventTarget(),
    requestAnimationFrame: (fn) => frames.push(fn),
    cancelAnimationFrame: () => {},
  });
  const canvas = Object.assign(new EventTarget(), {
    focus() {},
    setPointerCapture() {},
    getBoundingClientRect: () => ({ left: 0, top: 0, width: 1000, height: 500 }),
  });
  const sent = [];
  const input = new InputCapture(canvas, { send: (m) => sent.push(m), surface, reserved });
  input.attach();
  const fire = (type, fields) => {
    const e = Object.assign(new Event(type, { cancelable: true }), fields);
    canvas.dispatchEvent(e);
    return e;
  };
  const restore = () => {
    input.detach();
    for (const n of names) {
      if (saved[n] === undefined) delete globalThis[n];
      else globalThis[n] = saved[n];
    }
  };
  return { sent, fire, frames, restore };
}

test('InputCapture: every input names the selected surface and is mapped with its size (§8)', () => {
  let target = { surface: 2, width: 500, height: 250 }; // shown at scale 2 in the 1000×500 box
  const c = capture(() => target);
  try {
    c.fire('mousedown', { button: 0, clientX: 100, clientY: 60 });
    c.fire('mouseup', { button: 0, clientX: 100, clientY: 60 });
    c.fire('wheel', { deltaX: 0, deltaY: 100, deltaMode: 0, clientX: 998, clientY: 498 });
    c.fire('keydown', { code: 'KeyA', key: 'a' });
    c.fire('pointermove', { clientX: 20, clientY: 40 });
    c.frames.shift()();
    target = { surface: 1, width: 100, height: 50 }; // another tab: scale 10
    c.fire('keyup', { code: 'KeyA', key: 'a' });
    c.fire('mousedown', { button: 2, clientX: 100, clientY: 60 });
    assert.deepEqual(c.sent, [
      { type: 'input.button', button: 1, down: true, x: 50, y: 30, surface: 2 },
      { type: 'input.button', button: 1, down: false, x: 50, y: 30, surface: 2 },
      { type: 'input.wheel', dx: 0, dy: 1, x: 499, y: 249, surface: 2 },
      { type: 'input.key', code: 'KeyA', key: 'a', down: true, surface: 2 },
      { type: 'input.move', x: 10, y: 20, surface: 2 },
      { type: 'input.key', code: 'KeyA', key: 'a', down: false, surface: 1 },
      { type: 'input.button', button: 3, down: true, x: 10, y: 6, surface: 1 },
    ]);
  } finally {
    c.restore();
  }
});

test('InputCapture: nothing goes out while there is no surface to act on (none yet, or not live)', () => {
  const c = capture(() => null);
  try {
    c.fire('mousedown', { button: 0, clientX: 1, clientY: 1 });
    c.fire('keydown', { code: 'KeyA', key: 'a' });
    c.fire('pointermove', { clientX: 2, clientY: 2 });
    assert.equal(c.frames.length, 0);
    assert.deepEqual(c.sent, []);
  } finally {
    c.restore();
  }
});

test('InputCapture: the page’s own shortcut is neither sent nor kept from the page; a key held remotely is let go', () => {
  const shortcut = (e) => e.ctrlKey && e.altKey && (e.key === 'PageDown' || e.key === 'PageUp');
  const c = capture(() => ({ surface: 1, width: 100, height: 50 }), shortcut);
  try {
    const ctrl = c.fire('keydown', { code: 'ControlLeft', key: 'Control', ctrlKey: true });
    const down = c.fire('keydown', { code: 'PageDown', key: 'PageDown', ctrlKey: true, altKey: true });
    const up = c.fire('keyup', { code: 'PageDown', key: 'PageDown', ctrlKey: true, altKey: true });
    assert.equal(ctrl.defaultPrevented, true);
    assert.equal(down.defaultPrevented, false, 'left to the page, which switches windows');
    assert.equal(up.defaultPrevented, false);
    assert.deepEqual(c.sent, [{ type: 'input.key', code: 'ControlLeft', key: 'Control', down: true, surface: 1 }]);
    // PageDown went down as an ordinary key (no Alt yet); released with Ctrl+Alt held it is still let go.
    c.sent.length = 0;
    c.fire('keydown', { code: 'PageDown', key: 'PageDown', ctrlKey: true });
    c.fire('keyup', { code: 'PageDown', key: 'PageDown', ctrlKey: true, altKey: true });
    assert.deepEqual(c.sent, [
      { type: 'input.key', code: 'PageDown', key: 'PageDown', down: true, surface: 1 },
      { type: 'input.key', code: 'PageDown', key: 'PageDown', down: false, surface: 1 },
    ]);
  } finally {
    c.restore();
  }
});
