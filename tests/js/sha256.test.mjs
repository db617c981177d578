// node --test tests/js/ — the incremental SHA-256 the file transfers use (docs/protocol.md §9): FIPS 180-4's
// examples, and any split of the input giving node:crypto's one-shot digest.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';

import { Sha256, sha256Hex } from '../../impromptu/web/lib/sha256.js';

const ascii = (s) => new TextEncoder().encode(s);
const reference = (bytes) => createHash('sha256').update(bytes).digest('hex');

test('NIST vectors: empty, "abc", the 448-bit message, the 896-bit message', () => {
  assert.equal(sha256Hex(new Uint8Array(0)), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  assert.equal(sha256Hex(ascii('abc')), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  assert.equal(
    sha256Hex(ascii('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq')),
    '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
  );
  assert.equal(
    sha256Hex(
      ascii(
        'abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu',
      ),
    ),
    'cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1',
  );
});

test('NIST vector: one million "a", in pieces of every awkward size', () => {
  const expected = 'cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0';
  const million = new Uint8Array(1_000_000).fill(0x61);
  assert.equal(sha256Hex(million), expected);
  for (const piece of [1, 3, 55, 56, 63, 64, 65, 1000, 65536]) {
    const h = new Sha256();
    for (let i = 0; i < million.length; i += piece) h.update(million.subarray(i, i + piece));
    assert.equal(h.digestHex(), expected, `pieces of ${piece}`);
    assert.equal(h.length, 1_000_000);
  }
});

test('every length around the padding boundaries matches node:crypto', () => {
  const data = randomBytes(300);
  for (let n = 0; n <= 300; n++) assert.equal(sha256Hex(data.subarray(0, n)), reference(data.subarray(0, n)), `${n} bytes`);
});

test('random splits equal the one-shot digest', () => {
  for (let round = 0; round < 50; round++) {
    const data = randomBytes(Math.floor(Math.random() * 200_000));
    const h = new Sha256();
    let pos = 0;
    while (pos < data.length) {
      const n = Math.min(data.length - pos, Math.floor(Math.random() ** 3 * 70_000));
      h.update(data.subarray(pos, pos + n)); // includes empty updates
      pos += n;
    }
    assert.equal(h.digestHex(), reference(data), `round ${round}, ${data.length} bytes`);
  }
});

test('takes ArrayBuffers, typed arrays and views at an offset', () => {
  const data = randomBytes(1000);
  const copy = new Uint8Array(data).buffer;
  assert.equal(new Sha256().update(copy).digestHex(), reference(data));
  const unaligned = new Uint8Array(1003);
  unaligned.set(data, 3);
  assert.equal(new Sha256().update(unaligned.subarray(3)).digestHex(), reference(data));
  assert.equal(new Sha256().update(new DataView(unaligned.buffer, 3, 1000)).digestHex(), reference(data));
  assert.throws(() => new Sha256().update('text'), TypeError);
});

test('clone() is a checkpoint: both copies go on independently', () => {
  const data = randomBytes(10_000);
  const h = new Sha256().update(data.subarray(0, 4_321));
  const checkpoint = h.clone();
  h.update(data.subarray(4_321));
  assert.equal(h.digestHex(), reference(data));
  assert.equal(checkpoint.length, 4_321);
  assert.equal(checkpoint.clone().digestHex(), reference(data.subarray(0, 4_321)));
  assert.equal(checkpoint.update(data.subarray(4_321)).digestHex(), reference(data));
});

test('a finished hash keeps its digest and refuses more input', () => {
  const h = new Sha256().update(ascii('abc'));
  const first = h.digest();
  first[0] ^= 0xff; // a copy: changing it changes nothing
  assert.equal(h.digestHex(), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  assert.throws(() => h.update(ascii('d')), /after digest/);
});
