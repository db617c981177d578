// The surfaces of a stream on a page (docs/protocol.md §8), for the operator page and the relay page alike: a
// SurfaceSet whose surfaces each decode into a canvas of their own, the selected one copied onto the screen canvas;
// the tab strip (role=tablist: one focusable tab button per surface, roving tabindex, arrow keys); and the shortcut
// that shows the previous / next surface from anywhere on the page (surfaces.js's SHORTCUT).
//
// Every surface keeps decoding, and the selected one is copied onto the screen canvas as each of its frames comes
// out. That costs one copy per shown frame, and buys instant tab switches: a desktop sends a window's frames only
// when it changes, as deltas of the last keyframe, so a surface that stopped decoding while hidden would show
// nothing until a keyframe was asked for and came back.

import { CanvasDecoder } from './decoder.js';
import { Reassembler } from './protocol.js';
import { SHORTCUT, SurfaceSet, surfaceShortcut, tabKeyTarget, tabModel } from './surfaces.js';

export class SurfaceView {
  /**
   * `canvas`: the screen canvas. `strip`: the element shown only while there are several surfaces, holding
   * `tablist` (role=tablist), which gets one tab per surface, and a hint that names the shortcut.
   *
   * `requestKeyframe(surface)` asks upstream for a keyframe; `log(key, ...args)` logs once per key;
   * `onChange()` follows any change worth showing (surfaces, configs, titles, states, the selection);
   * `onFrame(surface, {timestamp, first})` follows each frame of the selected surface once it is on the screen;
   * `onSelect(surface)` follows a change of selection, before it is drawn; `onActivate(surface)` a tab activated
   * with a click, Enter or Space (the operator page sends the keyboard back to the picture);
   * `onDecoderError(surface, error, fatal)` a decoder failure (a non-fatal one also makes it wait for a keyframe).
   * `meter` (a stats.js PipelineMeter, optional) is told of every surface's frames: completed, lost, decoded (and
   * how long that took) and thrown away.
   */
  constructor({
    canvas,
    strip,
    tablist,
    requestKeyframe,
    log = () => {},
    onChange = () => {},
    onFrame = () => {},
    onSelect = () => {},
    onActivate = () => {},
    onDecoderError = () => {},
    meter = null,
  }) {
    this._meter = meter;
    this._slowMs = 0;
    this.canvas = canvas;
    this._ctx = canvas.getContext('2d', { alpha: false });
    this._strip = strip;
    this._tablist = tablist;
    this._onChange = onChange;
    this._onFrame = onFrame;
    this._onSelect = onSelect;
    this._onActivate = onActivate;
    this._onDecoderError = onDecoderError;
    this._tabs = new Map(); // surface -> its tab's button
    this.surfaces = new SurfaceSet({
      createReassembler: (surface) =>
        new Reassembler({
          surface,
          onKeyframeRequest: () => requestKeyframe(surface),
          onDrop: (reason) => log(`video:${reason}`, `dropped a video fragment: ${reason}`),
          onComplete: (frame) => {
            meter?.frameComplete(surface, frame.captureUs);
            if (frame.withheld) meter?.frameDropped(1);
          },
          onLost: (n) => meter?.frameDropped(n),
        }),
      createDecoder: (surface) => this._createDecoder(surface),
      onChange: () => {
        this.renderTabs();
        onChange();
      },
      // Video that overtook its surface's first `config` (they travel on different channels) is kept until it
      // arrives, so the first keyframe is not thrown away; beyond a bound, and for an ended window, it is dropped.
      onDrop: (reason) => {
        const why = reason === 'early' ? 'it came long before its config' : 'its window was closed';
        log(`video:${reason}`, `dropped video: ${why}`);
      },
    });
    tablist.setAttribute('aria-keyshortcuts', SHORTCUT.keys);
  }

  /** The surface shown (and operated), or null. */
  get selected() {
    return this.surfaces.selected;
  }

  /** Every surface, for test hooks: `{surface, title, width, height, state, framesDecoded, starts}`, by number. */
  describe() {
    return this.surfaces.list.map((s) => ({
      surface: s.surface,
      title: s.title,
      width: s.config?.width ?? 0,
      height: s.config?.height ?? 0,
      state: s.state,
      framesDecoded: s.framesDecoded,
      starts: s.starts, // configs that configured its decoder afresh
    }));
  }

  /** Frames waiting in every surface's decoder. */
  queueSize() {
    let n = 0;
    for (const s of this.surfaces.list) if (s.decoder !== null && s.state !== 'ended') n += s.decoder.queueSize;
    return n;
  }

  /** Test hook: every surface's decoder gets each frame `ms` late, one at a time (0: as fast as it can). */
  slowDecode(ms) {
    this._slowMs = Math.max(0, Number(ms) || 0);
    for (const s of this.surfaces.list) if (s.decoder !== null) s.decoder.slowMs = this._slowMs;
  }

  /** Whether there is a tab strip: several surfaces. */
  get several() {
    return this.surfaces.list.length > 1;
  }

  /** Listen for the tab strip's keys and the shortcut (on the whole document). */
  attach() {
    this._tablist.addEventListener('keydown', (e) => this._onTabKey(e));
    document.addEventListener('keydown', (e) => this._onShortcut(e));
  }

  /**
   * Whether key event `e` is the page's own shortcut rather than a key for the desktop: the operator page's input
   * capture forwards all keys but these.
   */
  reserves(e) {
    return this.several && surfaceShortcut(e) !== null;
  }

  /** A `config`; `fresh` as in SurfaceSet.configure. */
  configure(config, options) {
    const s = this.surfaces.configure(config, options);
    if (s === this.surfaces.selected) this.show();
    return s;
  }

  setState(msg) {
    this.surfaces.setState(msg);
  }

  push(buffer) {
    return this.surfaces.push(buffer);
  }

  tick() {
    this.surfaces.tick();
  }

  disconnect() {
    this.surfaces.disconnect();
  }

  /** Show surface `n` on the screen canvas. False when there is none. */
  select(n) {
    const before = this.surfaces.selected?.surface;
    if (before === n) return true;
    if (this.surfaces.get(n) === null) return false;
    this._onSelect(n);
    this.surfaces.select(n);
    this.show();
    return true;
  }

  /** Show the surface `delta` (−1 or +1) away from the selected one, wrapping around. False with fewer than two. */
  step(delta) {
    if (!this.several) return false;
    const next = tabKeyTarget(this._numbers(), this.surfaces.selected?.surface, delta < 0 ? 'ArrowLeft' : 'ArrowRight');
    return next !== null && this.select(next);
  }

  /** Copy the selected surface's picture onto the screen canvas (sized to it). */
  show() {
    const s = this.surfaces.selected;
    if (!s || !s.config) return;
    if (this.canvas.width !== s.config.width) this.canvas.width = s.config.width;
    if (this.canvas.height !== s.config.height) this.canvas.height = s.config.height;
    if (s.framesDecoded > 0) this._ctx.drawImage(s.decoder.canvas, 0, 0);
  }

  /** The tab strip: one tab per surface when there are several, none otherwise. */
  renderTabs() {
    const model = tabModel(this.surfaces);
    this._strip.hidden = !model.visible;
    document.body.classList.toggle('tabs', model.visible); // room for the strip above the stage
    if (!model.visible) return;
    for (const t of model.tabs) {
      let b = this._tabs.get(t.surface);
      if (b === undefined) {
        b = document.createElement('button');
        b.type = 'button';
        b.id = `tab-${t.surface}`;
        b.setAttribute('role', 'tab');
        b.setAttribute('aria-controls', this.canvas.id);
        b.dataset.surface = String(t.surface);
        const hint = this._strip.querySelector('.hint');
        if (hint?.id) b.setAttribute('aria-describedby', hint.id);
        b.append(document.createElement('span'), document.createElement('span'));
        b.firstChild.className = 'label';
        b.lastChild.className = 'marker';
        b.addEventListener('click', () => {
          this.select(t.surface);
          this._onActivate(t.surface);
        });
        this._tabs.set(t.surface, b);
        this._tablist.append(b); // surfaces come in the order of their numbers: §8 numbers them as configured
      }
      if (b.firstChild.textContent !== t.label) b.firstChild.textContent = t.label;
      b.lastChild.textContent = t.marker;
      b.lastChild.hidden = t.marker === '';
      b.title = t.tooltip;
      b.dataset.state = t.state;
      b.setAttribute('aria-selected', String(t.selected));
      b.tabIndex = t.selected ? 0 : -1;
    }
  }

  _numbers() {
    return this.surfaces.list.map((s) => s.surface);
  }

  _onTabKey(e) {
    const next = tabKeyTarget(this._numbers(), this.surfaces.selected?.surface, e.key);
    if (next === null || e.ctrlKey || e.altKey || e.metaKey) return;
    e.preventDefault();
    this.select(next);
    this._tabs.get(next)?.focus();
  }

  _onShortcut(e) {
    if (e.defaultPrevented || e.isComposing || !this.reserves(e)) return;
    e.preventDefault();
    const onTab = [...this._tabs.values()].includes(document.activeElement);
    if (!this.step(surfaceShortcut(e))) return;
    // Focus stays where it was: on the picture the keys now go to the window shown; on the strip it follows.
    if (onTab) this._tabs.get(this.surfaces.selected.surface)?.focus();
  }

  _createDecoder(surface) {
    const own = document.createElement('canvas');
    const decoder = new CanvasDecoder(own, {
      onFrame: ({ timestamp }) => {
        if (this.surfaces.selected?.surface !== surface) return;
        this.show();
        this._onFrame(surface, { timestamp, first: decoder.framesDecoded === 1 });
      },
      onError: (err, fatal) => {
        if (!fatal) this.surfaces.needKeyframe(surface);
        this._onDecoderError(surface, err, fatal);
      },
      onDecoded: (ms) => this._meter?.frameDecoded(ms),
      onDiscard: (n) => this._meter?.frameDropped(n),
    });
    decoder.slowMs = this._slowMs;
    return decoder;
  }
}
