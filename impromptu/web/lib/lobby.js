// The lobby's pure side (docs/protocol.md §11): validation of what the server sends a lobby, the lobby token in
// the address, the links a desktop publishes or a user pastes, and how sizes, viewers and uptimes read.
// DOM-free so `node --test` can exercise it; lobby-app.js draws the page.

import { parseTyped } from './protocol.js';

// A thumbnail is at most 40 KiB (§11), 54.6 Ki of base64; the list of many desktops may be longer than §2's 64 KiB.
export const MAX_MESSAGE = 256 * 1024;
export const MAX_DESKTOPS = 500;
export const MAX_THUMBNAIL_B64 = 4 * Math.ceil((40 * 1024) / 3);
export const THUMBNAIL_MIMES = new Set(['image/jpeg', 'image/png', 'image/webp']);
const MAX_REASON = 200;
const MAX_NAME = 64;
// As far as the server lets a desktop's `status` go (it keeps any count from 0 to 2¹⁶).
const MAX_COUNT = 1 << 16;

// Ids are the server's own (hex today); kept to characters that are safe anywhere we put them.
const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const CONTROL_RE = /^c=[A-Za-z0-9_-]{43}$/;
const VIEW_RE = /^v=[A-Za-z0-9_-]{43}$/;
const KEY_RE = /^[A-Za-z0-9_-]{43}$/;
const B64_RE = /^[A-Za-z0-9+/]+={0,2}$/;
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/;

const isInt = (v, lo, hi) => Number.isInteger(v) && v >= lo && v <= hi;
const isIntOrNull = (v, lo, hi) => v === null || isInt(v, lo, hi);

/** A desktop's name: 1–64 characters (code points, as the server counts them), none of them a control character. */
export function isDesktopName(v) {
  if (typeof v !== 'string' || CONTROL_CHARS.test(v)) return false;
  const n = [...v].length;
  return n >= 1 && n <= MAX_NAME;
}

/** `{control, view}` when `v` is a well-formed LINKS object (§11), else null. */
function parseLinks(v) {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return null;
  if (typeof v.control !== 'string' || !CONTROL_RE.test(v.control)) return null;
  if (typeof v.view !== 'string' || !VIEW_RE.test(v.view)) return null;
  return { control: v.control, view: v.view };
}

/** One DESKTOP of a `desktops` list: `{ok: true, desktop}` with only the known fields, or `{ok: false, reason}`. */
function parseDesktop(raw) {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return { ok: false, reason: 'desktop' };
  if (typeof raw.id !== 'string' || !ID_RE.test(raw.id)) return { ok: false, reason: 'desktop.id' };
  if (!isDesktopName(raw.name)) return { ok: false, reason: 'desktop.name' };
  // Before a desktop's first `status`, these are null.
  if (!isIntOrNull(raw.width, 0, MAX_COUNT)) return { ok: false, reason: 'desktop.width' };
  if (!isIntOrNull(raw.height, 0, MAX_COUNT)) return { ok: false, reason: 'desktop.height' };
  if (!isIntOrNull(raw.viewers, 0, MAX_COUNT)) return { ok: false, reason: 'desktop.viewers' };
  const uptime = raw.uptime;
  if (uptime !== null && !(typeof uptime === 'number' && Number.isFinite(uptime) && uptime >= 0)) {
    return { ok: false, reason: 'desktop.uptime' };
  }
  // §11 gives `surfaces` no null, but it comes from the same `status` as the others: take null as "not yet".
  const surfaces = raw.surfaces ?? null;
  if (!isIntOrNull(surfaces, 0, MAX_COUNT)) return { ok: false, reason: 'desktop.surfaces' };
  const links = raw.links ?? null;
  const parsedLinks = links === null ? null : parseLinks(links);
  if (links !== null && parsedLinks === null) return { ok: false, reason: 'desktop.links' };
  return {
    ok: true,
    desktop: {
      id: raw.id,
      name: raw.name,
      width: raw.width,
      height: raw.height,
      viewers: raw.viewers,
      uptime: uptime === null ? null : Math.floor(uptime),
      surfaces,
      links: parsedLinks,
    },
  };
}

function parseDesktops(raw) {
  const list = raw.desktops;
  if (!Array.isArray(list) || list.length > MAX_DESKTOPS) return { ok: false, reason: 'desktops.desktops' };
  const desktops = [];
  const seen = new Set();
  for (const item of list) {
    const parsed = parseDesktop(item);
    if (!parsed.ok) return parsed;
    if (seen.has(parsed.desktop.id)) return { ok: false, reason: 'desktop.id twice' };
    seen.add(parsed.desktop.id);
    desktops.push(parsed.desktop);
  }
  return { ok: true, msg: { type: 'desktops', desktops } };
}

function parseThumbnail(raw) {
  if (typeof raw.id !== 'string' || !ID_RE.test(raw.id)) return { ok: false, reason: 'thumbnail.id' };
  if (!THUMBNAIL_MIMES.has(raw.mime)) return { ok: false, reason: 'thumbnail.mime' };
  const data = raw.data;
  if (typeof data !== 'string' || data.length > MAX_THUMBNAIL_B64 || data.length % 4 !== 0 || !B64_RE.test(data)) {
    return { ok: false, reason: 'thumbnail.data' };
  }
  return { ok: true, msg: { type: 'thumbnail', id: raw.id, mime: raw.mime, data } };
}

/**
 * Validate one server → lobby message (text): `refused`, `desktops` or `thumbnail` (§11). Returns `{ok: true, msg}`
 * with only the known fields, or `{ok: false, reason}` (`reason` one of a fixed few; an unknown type adds
 * `detail`, the type quoted and shortened). Pure.
 */
export function parseLobbyMessage(text) {
  if (typeof text !== 'string') return { ok: false, reason: 'binary message' };
  if (text.length > MAX_MESSAGE) return { ok: false, reason: 'message over 256 KiB' };
  const parsed = parseTyped(text);
  if (!parsed.ok) return parsed;
  const raw = parsed.raw;
  switch (raw.type) {
    case 'refused': {
      const reason = typeof raw.reason === 'string' ? raw.reason.slice(0, MAX_REASON) : '';
      return { ok: true, msg: { type: 'refused', reason } };
    }
    case 'desktops':
      return parseDesktops(raw);
    case 'thumbnail':
      return parseThumbnail(raw);
  }
  return { ok: false, reason: 'unknown type', detail: JSON.stringify(raw.type.slice(0, 40)) };
}

/** The `data:` URL of a validated `thumbnail` message (its mime and base64 are checked, so it is safe in `src`). */
export function thumbnailUrl(msg) {
  return `data:${msg.mime};base64,${msg.data}`;
}

/** The fields of a fragment (`#a=1&b=2`, `#` optional), values left encoded. Later duplicates win. */
function fragmentFields(hash) {
  const fields = new Map();
  for (const part of (hash ?? '').replace(/^#/, '').split('&')) {
    const eq = part.indexOf('=');
    if (eq > 0) fields.set(part.slice(0, eq), part.slice(eq + 1));
  }
  return fields;
}

/** The lobby token in `location.hash` (`#token=T`, percent-decoded), or null when there is none. */
export function tokenFromFragment(hash) {
  const value = fragmentFields(hash).get('token');
  if (!value) return null;
  // Not URLSearchParams: it would turn a `+` in a token into a space.
  try {
    return decodeURIComponent(value);
  } catch {
    return value; // a stray `%`: the token is what was written
  }
}

/** Where a desktop that published its links opens: `${origin}/view#c=…`, or null when `links.control` is malformed. */
export function operatorUrl(origin, links) {
  const control = links?.control;
  if (typeof control !== 'string' || !CONTROL_RE.test(control)) return null;
  return `${origin}/view#${control}`;
}

/**
 * The key fragment (`c=…`, else `v=…`) of a pasted impromptu link (`http(s)://host/#c=…`, `…/view#v=…`), or null
 * when the text is not such a link.
 */
export function fragmentFromPastedLink(text) {
  if (typeof text !== 'string') return null;
  let url;
  try {
    url = new URL(text.trim());
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  const fields = fragmentFields(url.hash);
  for (const name of ['c', 'v']) {
    const key = fields.get(name);
    if (key !== undefined) return KEY_RE.test(key) ? `${name}=${key}` : null;
  }
  return null;
}

/** "42 s", "5 min", "3 h 12 min", "2 d 4 h"; an empty string for an unknown uptime. */
export function formatUptime(seconds) {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0) return '';
  const s = Math.floor(seconds);
  if (s < 60) return `${s} s`;
  const min = Math.floor(s / 60);
  if (min < 60) return `${min} min`;
  const h = Math.floor(min / 60);
  if (h < 24) return min % 60 ? `${h} h ${min % 60} min` : `${h} h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d} d ${h % 24} h` : `${d} d`;
}

/** "no viewers", "1 viewer", "3 viewers"; an empty string for an unknown count. */
export function formatViewers(n) {
  if (!Number.isInteger(n) || n < 0) return '';
  if (n === 0) return 'no viewers';
  return n === 1 ? '1 viewer' : `${n} viewers`;
}

/** "1280×800", or an empty string before the desktop said its size. */
export function formatSize(width, height) {
  return Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0 ? `${width}×${height}` : '';
}

/** "no desktops", "1 desktop", "3 desktops". */
export function formatCount(n) {
  if (n === 0) return 'no desktops';
  return n === 1 ? '1 desktop' : `${n} desktops`;
}

/** The same backoff as a desktop's (§11): 0.25 s, doubling, at most 2 s; ±`jitter` so lobbies spread out. */
export const RECONNECT = { initialMs: 250, maxMs: 2000, factor: 2, jitter: 0.1 };

/** Delay before reconnection attempt number `failures` (0-based). */
export function reconnectDelay(failures, { initialMs, maxMs, factor, jitter } = RECONNECT, random = Math.random) {
  const base = Math.min(maxMs, initialMs * factor ** Math.max(0, failures));
  return Math.round(base * (1 + jitter * (2 * random() - 1)));
}
