// Pointer, wheel and keyboard capture on the screen canvas, turned into `input.*` control messages
// (docs/protocol.md §5, and §8: each names the surface it acts on). The coordinate and wheel arithmetic are pure functions, exported for tests.

import { controlMessages as M } from './protocol.js';

/**
 * Map a client (CSS pixel) position to surface pixels. `rect` is the canvas's bounding box; the picture is drawn
 * into it with `object-fit: contain`, so it may be letterboxed inside the box. The result is clamped to
 * [0, width-1] × [0, height-1].
 */
export function mapToSurface(clientX, clientY, rect, width, height) {
  const scale = Math.min(rect.width / width, rect.height / height) || 1;
  const left = rect.left + (rect.width - width * scale) / 2;
  const top = rect.top + (rect.height - height * scale) / 2;
  const x = Math.floor((clientX - left) / scale);
  const y = Math.floor((clientY - top) / scale);
  return { x: clamp(x, 0, width - 1), y: clamp(y, 0, height - 1) };
}

function clamp(v, lo, hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

/** DOM `MouseEvent.button` → X button (1 left, 2 middle, 3 right); null for the others. */
export function xButton(domButton) {
  return { 0: 1, 1: 2, 2: 3 }[domButton] ?? null;
}

const PIXELS_PER_NOTCH = 100; // Chromium reports 100 px (×devicePixelRatio on some systems) per wheel notch
const LINES_PER_NOTCH = 3; // Firefox reports 3 lines per notch

/**
 * Turns wheel deltas (any `deltaMode`) into whole notches, carrying fractions over so that touchpads' small
 * deltas add up, and clamping each message to −10…10.
 */
export class WheelAccumulator {
  constructor() {
    this._x = 0;
    this._y = 0;
  }

  /** Returns `{dx, dy}` in notches to send now (both may be 0). */
  add(deltaX, deltaY, deltaMode = 0) {
    const unit = deltaMode === 1 ? 1 / LINES_PER_NOTCH : deltaMode === 2 ? 1 : 1 / PIXELS_PER_NOTCH;
    const dx = this._take('_x', deltaX * unit);
    const dy = this._take('_y', deltaY * unit);
    return { dx, dy };
  }

  reset() {
    this._x = this._y = 0;
  }

  _take(axis, units) {
    if (units === 0) return 0;
    // Starting afresh, or reversing: don't first pay back what was carried the other way.
    if (Math.sign(units) !== Math.sign(this[axis])) this[axis] = 0;
    this[axis] += units;
    let n = Math.trunc(this[axis]);
    // One click of a coarse wheel (a sizeable delta on its own) is worth at least one notch.
    if (n === 0 && Math.abs(units) >= 0.5) n = Math.sign(units);
    this[axis] -= n;
    if (Math.sign(this[axis]) === -Math.sign(units)) this[axis] = 0;
    if (Math.abs(n) > 10) {
      n = Math.sign(n) * 10; // a huge fling: send the most one message may carry, forget the rest
      this[axis] = 0;
    }
    return n || 0; // never -0
  }
}

/**
 * Captures input on `canvas` while it has focus and hands `input.*` messages to `send(message)`.
 * `surface()` returns the surface input goes to, `{surface, width, height}` (or null before the first `config`, or
 * while it is not live); nothing is sent then. Coordinates are mapped with that surface's size. `reserved(e)` is
 * true for a key event that is the page's own (the shortcut that switches surfaces): it is neither sent nor kept
 * from the page, except the release of a key the desktop already holds.
 */
export class InputCapture {
  constructor(canvas, { send, surface, reserved = () => false }) {
    this.canvas = canvas;
    this._send = send;
    this._surface = surface;
    this._reserved = reserved;
    this._wheel = new WheelAccumulator();
    this._pendingMove = null;
    this._raf = 0;
    this._buttons = new Set();
    this._keys = new Set();
    this._listeners = [];
    this._attached = false;
  }

  attach() {
    if (this._attached) return;
    this._attached = true;
    const c = this.canvas;
    const on = (target, type, fn, opts) => {
      target.addEventListener(type, fn, opts);
      this._listeners.push(() => target.removeEventListener(type, fn, opts));
    };
    on(c, 'pointerdown', (e) => {
      c.focus({ preventScroll: true });
      if (e.pointerType === 'mouse') c.setPointerCapture?.(e.pointerId);
    });
    on(c, 'pointermove', (e) => this._onMove(e));
    on(c, 'mousedown', (e) => this._onButton(e, true));
    on(c, 'mouseup', (e) => this._onButton(e, false));
    on(c, 'wheel', (e) => this._onWheel(e), { passive: false });
    on(c, 'contextmenu', (e) => e.preventDefault());
    on(c, 'auxclick', (e) => e.preventDefault());
    on(c, 'keydown', (e) => this._onKey(e, true));
    on(c, 'keyup', (e) => this._onKey(e, false));
    on(c, 'blur', () => this.release());
    on(document, 'visibilitychange', () => {
      if (document.visibilityState === 'hidden') this.release();
    });
    on(window, 'pagehide', () => this.release());
  }

  detach() {
    for (const off of this._listeners.splice(0)) off();
    cancelAnimationFrame(this._raf);
    this._raf = 0;
    this._pendingMove = null;
    this._attached = false;
  }

  /** Let go of every key and button on the desktop (focus lost, page hidden). */
  release() {
    // Sent even when nothing is known to be held: cheap, and it heals any disagreement with the desktop.
    this._pendingMove = null;
    this._wheel.reset();
    this._buttons.clear();
    this._keys.clear();
    this._emit(M.release());
  }

  _position(e) {
    const s = this._surface();
    if (s === null) return null;
    const p = mapToSurface(e.clientX, e.clientY, this.canvas.getBoundingClientRect(), s.width, s.height);
    return { ...p, surface: s.surface ?? 0 };
  }

  _onMove(e) {
    const p = this._position(e);
    if (p === null) return;
    this._pendingMove = p;
    if (this._raf === 0) {
      this._raf = requestAnimationFrame(() => {
        this._raf = 0;
        const m = this._pendingMove;
        this._pendingMove = null;
        if (m !== null) this._emit(M.move(m.x, m.y, m.surface));
      });
    }
  }

  _onButton(e, down) {
    e.preventDefault(); // no text selection, no middle-click autoscroll, no back/forward navigation
    if (down) this.canvas.focus({ preventScroll: true });
    const button = xButton(e.button);
    const p = this._position(e);
    if (button === null || p === null) return;
    if (!down && !this._buttons.has(button)) return; // pressed elsewhere, released over us
    if (down) this._buttons.add(button);
    else this._buttons.delete(button);
    this._pendingMove = null; // the button message carries the position, in order
    this._emit(M.button(button, down, p.x, p.y, p.surface));
  }

  _onWheel(e) {
    e.preventDefault();
    const p = this._position(e);
    if (p === null) return;
    const { dx, dy } = this._wheel.add(e.deltaX, e.deltaY, e.deltaMode);
    if (dx === 0 && dy === 0) return;
    this._pendingMove = null;
    this._emit(M.wheel(dx, dy, p.x, p.y, p.surface));
  }

  _onKey(e, down) {
    if (e.isComposing || e.keyCode === 229) return; // an IME is composing; its result is not a key press
    const id = e.code || e.key;
    if (this._reserved(e) && (down || !this._keys.has(id))) return; // the page's; a key held remotely is let go
    e.preventDefault(); // keep Tab, Backspace, F5, Ctrl+W… on the desktop rather than the page
    const s = this._surface();
    if (s === null) return;
    if (!down && !this._keys.has(id)) return;
    if (down) this._keys.add(id);
    else this._keys.delete(id);
    this._emit(M.key(e.code, e.key, down, s.surface ?? 0));
  }

  _emit(message) {
    this._send(message);
  }
}
