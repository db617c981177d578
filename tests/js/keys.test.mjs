// node --test tests/js/ — link keys and MACs of docs/protocol.md §1 and the sealed `relayed` envelopes of §7, against
// the shared vectors that the Python side checks too (tests/vectors.json, made with Python's hmac and AESGCM).
import './webcrypto.mjs';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import {
  answerMac,
  b64url,
  deriveRoom,
  deriveViewKey,
  fromB64url,
  hmac,
  linkKeys,
  MAX_SEALED_MESSAGE,
  offerMac,
  openInput,
  parseLinkFragment,
  sealInput,
  verifyAnswerMac,
  verifyOfferMac,
} from '../../impromptu/web/lib/keys.js';

const V = JSON.parse(readFileSync(new URL('../vectors.json', import.meta.url), 'utf8'));
const KC = Uint8Array.from({ length: 32 }, (_, i) => i);

test('the vectors are the ones cross-checked with Python', () => {
  // Literals on purpose: if someone edits vectors.json, this fails rather than silently following.
  assert.equal(V.kc, 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8');
  assert.equal(V.kv, 'kJ3FEfIqcjtcexVcrn5ZcEs-O9NJjDoGsk2dZS8h4Cs');
  assert.equal(V.room, 'zxX3mSRP3_mO3qLpBQP6F6');
  assert.equal(V.peer, 'p1');
  assert.equal(V.sdp, 'v=0\r\n');
  assert.equal(V.offer_mac, 'zPQ4DCooFqDXtFYH1x70XJCOVP28Wm1qMA1NbsKpDnc');
  assert.equal(V.answer_mac_control, 'D_QtW1_ipZE02smSvzBlbtpV8Beh6r4lzGcimIi2yMg');
  assert.equal(V.answer_mac_view, 'tnX59gzZcoTmGg7mdBupzU0VGgtjdJsZ-IhywAtvpHQ');
  const { comment, ...input } = V.input;
  assert.match(comment, /AES-256-GCM/);
  assert.deepEqual(input, {
    from: 'p1',
    seq: 7,
    msg: '{"type":"input.key","code":"KeyA","key":"a","down":true}',
    iv: 'AAECAwQFBgcICQoL',
    box: '_hsDpK_kqEbPR6U5ctBG16IqGGz6tL9sZg7RnikR17dmMvbL4mdBEuJdrLoEoXCymoS1xPSAKMyapce78f710UNmIZxi1B1u',
  });
});

test('sealInput matches the vector byte for byte with its iv', async () => {
  const { from, seq, msg, iv, box } = V.input;
  const nonce = fromB64url(iv);
  assert.deepEqual(nonce, Uint8Array.from({ length: 12 }, (_, i) => i));
  assert.deepEqual(await sealInput(KC, from, seq, msg, nonce), { iv, box });
  assert.deepEqual(await sealInput(KC, from, seq, msg, nonce), { iv, box }, 'again, with the key imported once');
  // WebCrypto's output is the ciphertext followed by the 16-byte tag, as Python's AESGCM's.
  assert.equal(fromB64url(box).length, new TextEncoder().encode(msg).length + 16);
  assert.equal(await openInput(KC, from, seq, iv, box), msg);
});

test('sealInput picks a fresh random iv; what it seals opens only as sealed', async () => {
  const { from, seq, msg } = V.input;
  const a = await sealInput(KC, from, seq, msg);
  const b = await sealInput(KC, from, seq, msg);
  assert.match(a.iv, /^[A-Za-z0-9_-]{16}$/);
  assert.match(a.box, /^[A-Za-z0-9_-]+$/);
  assert.notEqual(a.iv, b.iv, 'a random iv each time');
  assert.notEqual(a.box, b.box);
  assert.equal(await openInput(KC, from, seq, a.iv, a.box), msg);
  assert.equal(await openInput(KC, from, seq, b.iv, b.box), msg);
  const text = '{"type":"input.key","code":"KeyE","key":"€","down":true}';
  const sealed = await sealInput(KC, 'p9', 3, text);
  assert.equal(await openInput(KC, 'p9', 3, sealed.iv, sealed.box), text, 'UTF-8 both ways');
  await assert.rejects(sealInput(KC, from, seq, msg, new Uint8Array(16)), /12 bytes/);
});

test('a sealed envelope fails to open when anything about it changed', async () => {
  const { from, seq, msg, iv, box } = V.input;
  const bytes = fromB64url(box);
  const flip = (i) => {
    const copy = Uint8Array.from(bytes);
    copy[i] ^= 1;
    return b64url(copy);
  };
  const ivBytes = fromB64url(iv);
  ivBytes[0] ^= 1;
  const cases = {
    'another sender': [KC, 'p2', seq, iv, box],
    'another number': [KC, from, seq + 1, iv, box],
    'a bit of the ciphertext': [KC, from, seq, iv, flip(0)],
    'a bit of the tag': [KC, from, seq, iv, flip(bytes.length - 1)],
    'the tag cut short': [KC, from, seq, iv, b64url(bytes.subarray(0, bytes.length - 1))],
    'another iv': [KC, from, seq, b64url(ivBytes), box],
    'under Kv, not Kc': [fromB64url(V.kv), from, seq, iv, box],
    'not base64url': [KC, from, seq, iv, `${box}!`],
    'a short iv': [KC, from, seq, 'AAECAwQF', box],
  };
  for (const [what, args] of Object.entries(cases)) assert.equal(await openInput(...args), null, what);
  assert.equal(await openInput(KC, from, seq, iv, box), msg, 'the original still opens');
  // The same with WebCrypto alone and Ki derived here (§7): the tag check is AES-GCM's, not something of keys.js's.
  const ki = await crypto.subtle.importKey('raw', await hmac(KC, 'impromptu/input'), 'AES-GCM', false, ['decrypt']);
  const aad = new TextEncoder().encode(`impromptu/input\n${from}\n${seq}`);
  const open = (data, additionalData = aad) =>
    crypto.subtle.decrypt({ name: 'AES-GCM', iv: fromB64url(iv), additionalData }, ki, data);
  assert.equal(new TextDecoder().decode(await open(bytes)), msg);
  await assert.rejects(open(fromB64url(flip(5))));
  await assert.rejects(open(bytes, new TextEncoder().encode(`impromptu/input\n${from}\n${seq + 1}`)));
  assert.equal(MAX_SEALED_MESSAGE, 4096);
});

test('verifyAnswerMac accepts the answer MAC under its own key only', async () => {
  const kv = fromB64url(V.kv);
  assert.equal(await verifyAnswerMac(kv, V.peer, V.sdp, V.answer_mac_view), true);
  assert.equal(await verifyAnswerMac(KC, V.peer, V.sdp, V.answer_mac_control), true);
  assert.equal(await verifyAnswerMac(KC, V.peer, V.sdp, V.answer_mac_view), false, 'view MAC under Kc');
  assert.equal(await verifyAnswerMac(kv, V.peer, V.sdp, V.answer_mac_control), false, 'control MAC under Kv');
  assert.equal(await verifyAnswerMac(kv, 'p2', V.sdp, V.answer_mac_view), false, 'bound to the peer id');
  assert.equal(await verifyAnswerMac(kv, V.peer, V.sdp, V.offer_mac), false, 'answer ≠ offer');
  assert.equal(await verifyAnswerMac(kv, V.peer, V.sdp, 'garbage!'), false);
});

test('derivations match the vectors', async () => {
  assert.equal(b64url(KC), V.kc);
  const kv = await deriveViewKey(KC);
  assert.equal(b64url(kv), V.kv);
  const room = await deriveRoom(kv);
  assert.equal(room, V.room);
  assert.match(room, /^[A-Za-z0-9_-]{22}$/);
  assert.equal(await offerMac(kv, V.peer, V.sdp), V.offer_mac);
  assert.equal(await answerMac(KC, V.peer, V.sdp), V.answer_mac_control);
  assert.equal(await answerMac(kv, V.peer, V.sdp), V.answer_mac_view);
});

test('verifyOfferMac accepts the right MAC only', async () => {
  const kv = fromB64url(V.kv);
  assert.equal(await verifyOfferMac(kv, V.peer, V.sdp, V.offer_mac), true);
  assert.equal(await verifyOfferMac(kv, 'p2', V.sdp, V.offer_mac), false, 'bound to the peer id');
  assert.equal(await verifyOfferMac(kv, V.peer, 'v=0\r\nx', V.offer_mac), false, 'bound to the SDP');
  assert.equal(await verifyOfferMac(KC, V.peer, V.sdp, V.offer_mac), false, 'under Kv, not Kc');
  assert.equal(await verifyOfferMac(kv, V.peer, V.sdp, V.answer_mac_view), false, 'offer ≠ answer');
  assert.equal(await verifyOfferMac(kv, V.peer, V.sdp, V.offer_mac.slice(0, 20)), false);
  assert.equal(await verifyOfferMac(kv, V.peer, V.sdp, '!!not base64!!'), false);
});

test('base64url round trip, no padding, rejects garbage', () => {
  for (let n = 0; n < 40; n++) {
    const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 37 + 251) & 0xff);
    const text = b64url(bytes);
    assert.doesNotMatch(text, /[+/=]/);
    assert.deepEqual(fromB64url(text), bytes);
  }
  assert.deepEqual(fromB64url('-_8'), Uint8Array.from([0xfb, 0xff]));
  assert.deepEqual(fromB64url('AA=='), Uint8Array.from([0]));
  assert.equal(fromB64url('a+b/'), null);
  assert.equal(fromB64url('abcde'), null);
  assert.equal(fromB64url('ab cd'), null);
  assert.equal(fromB64url(null), null);
});

test('parseLinkFragment', () => {
  const ok = parseLinkFragment(`#c=${V.kc}`);
  assert.equal(ok.ok, true);
  assert.deepEqual(ok.kc, KC);
  assert.equal(ok.kv, null);
  assert.equal(parseLinkFragment(`c=${V.kc}&x=1`).ok, true, 'leading # optional, unknown fields ignored');
  const viewOnly = parseLinkFragment(`#v=${V.kv}`);
  assert.equal(viewOnly.ok, true);
  assert.equal(viewOnly.kc, null);
  for (const incomplete of ['', '#', '#c=', '#x=1']) {
    const r = parseLinkFragment(incomplete);
    assert.equal(r.ok, false, incomplete);
    assert.equal(r.reason, 'This link is incomplete: it has no key after #');
  }
  assert.match(parseLinkFragment('#c=AAEC').reason, /damaged/);
  assert.match(parseLinkFragment(`#c=${V.kc}%`).reason, /damaged/);
});

test('linkKeys: a control link derives Kv and the room; a view link has no Kc', async () => {
  const control = await linkKeys(parseLinkFragment(`#c=${V.kc}`));
  assert.equal(control.role, 'control');
  assert.equal(b64url(control.kv), V.kv);
  assert.equal(control.room, V.room);
  const view = await linkKeys(parseLinkFragment(`#v=${V.kv}`));
  assert.deepEqual({ role: view.role, kc: view.kc, room: view.room }, { role: 'view', kc: null, room: V.room });
  await assert.rejects(linkKeys(parseLinkFragment(`#c=${V.kc}&v=${V.kc}`)), /do not belong together/);
});
