// node --test tests/js/ — link keys and MACs of docs/protocol.md §1, against the shared vectors that the Python
// side checks too (tests/vectors.json, cross-checked with Python's hmac when written).
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
  linkKeys,
  offerMac,
  parseLinkFragment,
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
