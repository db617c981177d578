// The link's keys and what is derived from them (docs/protocol.md §1): base64url, the `#c=`/`#v=` fragment,
// the HMAC-SHA256 derivations, and the AES-256-GCM sealing of `relayed` envelopes (§7), with WebCrypto
// (`crypto.subtle`, present in browsers' secure contexts and in Node ≥ 20). DOM-free.

const encoder = new TextEncoder();

/** base64url without padding. */
export function b64url(bytes) {
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Decode base64url (padding optional). Returns `null` for anything that is not base64url. */
export function fromB64url(text) {
  if (typeof text !== 'string' || !/^[A-Za-z0-9_-]*={0,2}$/.test(text)) return null;
  const bare = text.replace(/=+$/, '');
  if (bare.length % 4 === 1) return null;
  const std = bare.replace(/-/g, '+').replace(/_/g, '/');
  let bin;
  try {
    bin = atob(std + '='.repeat((4 - (std.length % 4)) % 4));
  } catch {
    return null;
  }
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function subtle() {
  const s = globalThis.crypto?.subtle;
  if (!s) throw new Error('WebCrypto (crypto.subtle) is unavailable: the page must be a secure context');
  return s;
}

function importKey(key, usages) {
  return subtle().importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, usages);
}

/** HMAC-SHA256 of the UTF-8 `message` under raw `key` bytes. */
export async function hmac(key, message) {
  const k = await importKey(key, ['sign']);
  return new Uint8Array(await subtle().sign('HMAC', k, encoder.encode(message)));
}

/** `Kv = H(Kc, "impromptu/view")`. */
export function deriveViewKey(kc) {
  return hmac(kc, 'impromptu/view');
}

/** Room id: the first 22 characters of `b64(H(Kv, "impromptu/room"))`. */
export async function deriveRoom(kv) {
  return b64url(await hmac(kv, 'impromptu/room')).slice(0, 22);
}

const offerMessage = (peer, sdp) => `impromptu/offer\n${peer}\n${sdp}`;
const answerMessage = (peer, sdp) => `impromptu/answer\n${peer}\n${sdp}`;

/** `b64(H(Kv, "impromptu/offer\n" + peer + "\n" + sdp))`. */
export async function offerMac(kv, peer, sdp) {
  return b64url(await hmac(kv, offerMessage(peer, sdp)));
}

/** `b64(H(K, "impromptu/answer\n" + peer + "\n" + sdp))`; `K` is `Kc` for control, `Kv` for view. */
export async function answerMac(key, peer, sdp) {
  return b64url(await hmac(key, answerMessage(peer, sdp)));
}

// ---- `relayed` envelopes (§7): sealed with AES-256-GCM under Ki = H(Kc, "impromptu/input") ----

/** The most UTF-8 bytes of one message sealed in a `relayed` envelope (impromptu/envelope.py's MAX_MESSAGE). */
export const MAX_SEALED_MESSAGE = 4096;
const IV_BYTES = 12;

// A page behind a relay seals every input message: derive and import Ki once per Kc, not once per pointer move.
const inputKeys = new WeakMap();

function inputKey(kc) {
  let key = inputKeys.get(kc);
  if (key === undefined) {
    key = hmac(kc, 'impromptu/input').then((ki) =>
      subtle().importKey('raw', ki, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']),
    );
    inputKeys.set(kc, key);
    key.catch(() => inputKeys.delete(kc)); // a failure is not remembered
  }
  return key;
}

/** The envelope's associated data: it binds the sealed message to its sender and number. */
const inputAad = (from, seq) => encoder.encode(`impromptu/input\n${from}\n${seq}`);

/**
 * Seal `text` (one page → desktop message as JSON) from peer `from` with number `seq`: `{iv, box}` of a
 * `relayed` envelope, both base64url. `iv` (12 bytes) is random unless given (tests).
 */
export async function sealInput(kc, from, seq, text, iv = globalThis.crypto.getRandomValues(new Uint8Array(IV_BYTES))) {
  if (!(iv instanceof Uint8Array) || iv.length !== IV_BYTES) throw new TypeError('the iv must be 12 bytes');
  const key = await inputKey(kc);
  const box = await subtle().encrypt(
    { name: 'AES-GCM', iv, additionalData: inputAad(from, seq) },
    key,
    encoder.encode(text),
  );
  return { iv: b64url(iv), box: b64url(new Uint8Array(box)) };
}

/**
 * The text sealed in an envelope's `iv` and `box`, or null when it was not sealed under this `Kc` for this sender
 * and number, or was altered. Pages never open envelopes (the desktop does); tests do.
 */
export async function openInput(kc, from, seq, iv, box) {
  const nonce = fromB64url(iv);
  const sealed = fromB64url(box);
  if (nonce === null || nonce.length !== IV_BYTES || sealed === null) return null;
  try {
    const key = await inputKey(kc);
    const plain = await subtle().decrypt({ name: 'AES-GCM', iv: nonce, additionalData: inputAad(from, seq) }, key, sealed);
    return new TextDecoder('utf-8', { fatal: true }).decode(plain);
  } catch {
    return null;
  }
}

/** Check a base64url HMAC-SHA256 tag in constant time (WebCrypto's verify). */
async function verifyTag(key, message, mac) {
  const tag = fromB64url(mac);
  if (tag === null || tag.length !== 32) return false;
  const k = await importKey(key, ['verify']);
  return subtle().verify('HMAC', k, tag, encoder.encode(message));
}

/** Check the desktop's (or a relay's) offer MAC under `Kv`. */
export function verifyOfferMac(kv, peer, sdp, mac) {
  return verifyTag(kv, offerMessage(peer, sdp), mac);
}

/** Check a viewer's answer MAC under `key` (a relay tries `Kv`, and `Kc` when it holds it). */
export function verifyAnswerMac(key, peer, sdp, mac) {
  return verifyTag(key, answerMessage(peer, sdp), mac);
}

/**
 * Parse a link fragment (`location.hash`, with or without `#`). Returns
 * `{ok: true, kc, kv}` (`kc` null for a view-only link) or `{ok: false, reason}` with a sentence for the user.
 */
export function parseLinkFragment(hash) {
  const text = (hash ?? '').replace(/^#/, '');
  const fields = new Map();
  for (const part of text.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    fields.set(part.slice(0, eq), part.slice(eq + 1));
  }
  const c = fields.get('c');
  const v = fields.get('v');
  if (!c && !v) return { ok: false, reason: 'This link is incomplete: it has no key after #' };
  const kc = c ? fromB64url(c) : null;
  if (c && (kc === null || kc.length !== 32)) {
    return { ok: false, reason: 'This link is damaged: the key after #c= is not 32 bytes of base64url' };
  }
  const kv = v ? fromB64url(v) : null;
  if (v && (kv === null || kv.length !== 32)) {
    return { ok: false, reason: 'This link is damaged: the key after #v= is not 32 bytes of base64url' };
  }
  return { ok: true, kc, kv };
}

/**
 * Everything a page needs from its link: `{role, kc, kv, room}`. A control link derives `Kv` from `Kc` (and, if it
 * also carries a `v`, that must match).
 */
export async function linkKeys({ kc, kv }) {
  if (kc) {
    const derived = await deriveViewKey(kc);
    if (kv && b64url(kv) !== b64url(derived)) throw new Error('This link is damaged: its keys do not belong together');
    return { role: 'control', kc, kv: derived, room: await deriveRoom(derived) };
  }
  return { role: 'view', kc: null, kv, room: await deriveRoom(kv) };
}
