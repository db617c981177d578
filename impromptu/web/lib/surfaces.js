// The surfaces one connection carries (docs/protocol.md §8): the whole display, or several shared windows on the
// one `video` channel. Each surface gets its own Reassembler and decoder on its first `config`; video fragments
// are routed by their header's `surface`; one surface is selected (shown, and where input goes). DOM-free: the
// page hands in factories for what touches the DOM, so `node --test` covers the routing and the tab model.

import { isRename, parseFragment } from './protocol.js';

/** Video that overtook its surface's first `config` is held, at most this many fragments (4 MiB) in all. */
export const EARLY_MAX = 256;

/**
 * One surface: its last `config`, title, state (`"live"`, `"paused"`, `"ended"`) and the reason for a state
 * that is not live, its Reassembler and its decoder.
 */
class Surface {
  constructor(number) {
    this.surface = number;
    this.config = null;
    this.title = '';
    this.state = 'live';
    this.reason = '';
    this.reassembler = null;
    this.decoder = null;
    this.starts = 0; // configs that started it afresh (its decoder configured anew); a rename is not one
  }

  get framesDecoded() {
    return this.decoder ? this.decoder.framesDecoded : 0;
  }
}

/**
 * The surfaces of the current stream, in the order of their numbers.
 *
 * `createReassembler(surface)` makes a Reassembler for that surface (its keyframe requests name it);
 * `createDecoder(surface)` makes its decoder (`configure(config)`, `decode(frame)` → bool, `close()`,
 * `framesDecoded`); `onChange()` follows any change worth showing (a surface added, its config, title, state, the
 * selection); `onDrop(reason)` is told of video dropped here (no surface of that number yet, or it ended).
 */
export class SurfaceSet {
  constructor({ createReassembler, createDecoder, onChange = () => {}, onDrop = () => {} }) {
    this._createReassembler = createReassembler;
    this._createDecoder = createDecoder;
    this._onChange = onChange;
    this._onDrop = onDrop;
    this._surfaces = new Map(); // number -> Surface
    this._states = new Map(); // number -> surface.state that came before the surface's config
    this._early = [];
    this._selected = null;
  }

  /** Every surface, by number. */
  get list() {
    return [...this._surfaces.values()].sort((a, b) => a.surface - b.surface);
  }

  /** The surface shown and operated: the first one configured until the viewer picks another; or null. */
  get selected() {
    return this._selected === null ? null : this._surfaces.get(this._selected) ?? null;
  }

  get(number) {
    return this._surfaces.get(number) ?? null;
  }

  /** Show (and operate) surface `number`. False when there is no such surface. */
  select(number) {
    if (!this._surfaces.has(number)) return false;
    if (this._selected !== number) {
      this._selected = number;
      this._onChange();
    }
    return true;
  }

  /**
   * A `config`: the first one of a surface creates it, later ones start it afresh (a new size or codec; behind a
   * relay possibly a restarted desktop). `fresh` asks for a new Reassembler even for a known surface (so that new
   * frame numbers are not refused as old). Then the fragments that came early for it are replayed. One that only
   * renames the surface (`isRename`: a window's new title) just relabels it: its Reassembler and decoder go on.
   */
  configure(config, { fresh = false } = {}) {
    let s = this._surfaces.get(config.surface);
    if (s === undefined) {
      s = new Surface(config.surface);
      this._surfaces.set(s.surface, s);
      if (this._selected === null) this._selected = s.surface;
    }
    if (s.state === 'ended') return s; // its number is not used again in this session (§8)
    if (s.reassembler !== null && isRename(s.config, config)) {
      s.config = Object.freeze({ ...config });
      s.title = config.title;
      this._onChange();
      return s;
    }
    s.config = Object.freeze({ ...config });
    if (typeof config.title === 'string') s.title = config.title;
    if (s.reassembler === null) {
      // Its first config, or the first on a new connection, whose desktop sends a `surface.state` after the
      // config for a surface that is not live: until then it is.
      s.state = 'live';
      s.reason = '';
      s.reassembler = this._createReassembler(s.surface);
    } else if (fresh) s.reassembler = this._createReassembler(s.surface);
    else s.reassembler.reset();
    if (s.decoder === null) s.decoder = this._createDecoder(s.surface);
    s.decoder.configure(s.config);
    s.starts += 1;
    const state = this._states.get(s.surface);
    if (state !== undefined) {
      this._states.delete(s.surface);
      this._applyState(s, state);
    }
    this._onChange();
    const early = this._early;
    this._early = [];
    for (const buffer of early) this.push(buffer);
    return s;
  }

  /** A `surface.state`. One for a surface not configured yet is kept until its `config`. */
  setState(msg) {
    const s = this._surfaces.get(msg.surface);
    if (s === undefined) {
      this._states.set(msg.surface, msg);
      return;
    }
    this._applyState(s, msg);
    this._onChange();
  }

  _applyState(s, { state, reason }) {
    if (s.state === 'ended') return; // final
    s.state = state;
    s.reason = state === 'live' ? '' : reason;
    if (state === 'ended') {
      // Its last picture stays (in the decoder's canvas); the decoder itself has nothing more to do.
      s.reassembler = null;
      s.decoder?.close();
    } else if (state === 'live' && s.reassembler !== null) {
      // Its next frame is a keyframe (§8); until then delta frames are no use.
      s.reassembler.reset();
    }
  }

  /**
   * One video fragment: to its surface's Reassembler, and a complete frame on to its decoder. Returns the
   * surface that decoded a frame, or null.
   */
  push(buffer) {
    const h = parseFragment(buffer);
    if (h === null) return null; // the surface's Reassembler would say 'short'; without one, nobody to ask
    const s = this._surfaces.get(h.surface);
    if (s === undefined) {
      if (this._early.length < EARLY_MAX) this._early.push(buffer);
      else this._onDrop('early');
      return null;
    }
    if (s.reassembler === null) {
      this._onDrop('ended');
      return null;
    }
    const frame = s.reassembler.push(buffer);
    if (frame === null) return null;
    if (!s.decoder.decode(frame)) s.reassembler.needKeyframe();
    return s;
  }

  /** Expire stale frames and repeat due keyframe requests, for surfaces that are live (a paused one sends nothing). */
  tick() {
    for (const s of this._surfaces.values()) if (s.state === 'live') s.reassembler?.tick();
  }

  /** A decoder lost its state: its surface waits for a keyframe and asks for one. */
  needKeyframe(number) {
    this._surfaces.get(number)?.reassembler?.needKeyframe();
  }

  /**
   * The connection ended: frames in flight and early video are forgotten, and each surface's next `config`
   * starts a new Reassembler (a new connection numbers frames afresh). The surfaces, their tabs and last
   * pictures stay until the next connection says otherwise.
   */
  disconnect() {
    this._early = [];
    this._states.clear();
    for (const s of this._surfaces.values()) if (s.state !== 'ended') s.reassembler = null;
  }
}

/** What a surface's tab says: the window's title, or "Window N" (or "Desktop" for the whole display). */
export function tabLabel(s) {
  if (s.title) return s.title;
  return s.surface === 0 ? 'Desktop' : `Window ${s.surface}`;
}

const MARKERS = { live: '', paused: 'paused', ended: 'closed' };

/**
 * The tab strip for these surfaces: `{visible, tabs: [{surface, label, tooltip, state, marker, selected}]}`. With
 * one surface (or none) there is no strip: the page looks as it always did.
 */
export function tabModel(set) {
  const list = set.list;
  const selected = set.selected;
  return {
    visible: list.length > 1,
    tabs: list.map((s) => {
      const label = tabLabel(s);
      const marker = MARKERS[s.state];
      const why = { live: '', paused: ` — ${s.reason || 'paused'}`, ended: ' — this window was closed' }[s.state];
      return {
        surface: s.surface,
        label,
        tooltip: `${label}${why}`,
        state: s.state,
        marker,
        selected: selected !== null && s.surface === selected.surface,
      };
    }),
  };
}

/**
 * What the stage shows over the selected surface's picture: `null` (nothing: it is live), or
 * `{text, dim}` for a paused or ended window.
 */
export function surfaceOverlay(s) {
  if (s === null || s.state === 'live') return null;
  if (s.state === 'ended') return { text: 'This window was closed', dim: true };
  return { text: s.reason ? `Paused — ${s.reason}` : 'Paused', dim: true };
}

/**
 * The page's shortcut that shows the previous / next surface from anywhere on the page, the screen canvas
 * included: Ctrl+Alt+PageUp / Ctrl+Alt+PageDown. Remote applications hardly use it (PageUp/PageDown with Ctrl
 * alone switch tabs in many of them, and that stays theirs), and browsers leave it to pages. Only while there are
 * several surfaces: with one, every key goes to the desktop as before.
 */
export const SHORTCUT = Object.freeze({
  keys: 'Control+Alt+PageUp Control+Alt+PageDown', // for aria-keyshortcuts
  text: 'Ctrl+Alt+PageUp / PageDown',
});

/** −1 (previous) or +1 (next) for a key event `{key, ctrlKey, altKey, shiftKey, metaKey}` of the shortcut; else null. */
export function surfaceShortcut(e) {
  if (!e.ctrlKey || !e.altKey || e.shiftKey || e.metaKey) return null;
  if (e.key === 'PageUp') return -1;
  if (e.key === 'PageDown') return 1;
  return null;
}

/** The surface a key press on the tab strip moves to (roving focus): ArrowLeft/Right wrap, Home/End; or null. */
export function tabKeyTarget(numbers, current, key) {
  const i = numbers.indexOf(current);
  if (i < 0 || numbers.length === 0) return null;
  const n = numbers.length;
  switch (key) {
    case 'ArrowLeft':
      return numbers[(i - 1 + n) % n];
    case 'ArrowRight':
      return numbers[(i + 1) % n];
    case 'Home':
      return numbers[0];
    case 'End':
      return numbers[n - 1];
    default:
      return null;
  }
}
