// Incremental SHA-256 (FIPS 180-4) in plain JS: WebCrypto's `digest()` wants the whole input at once, and a file
// transfer (docs/protocol.md §9) hashes a file of up to gigabytes as its 64 KiB pieces go by. DOM-free.

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
  0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
  0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
  0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2,
]);

const INITIAL = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

function asBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('Sha256.update() takes an ArrayBuffer or a typed array');
}

/**
 * Compress every whole 64-byte block of `bytes[pos, end)` into `state` (an Int32Array of 8 words), with `w`
 * as the 64-word schedule; returns the position after the last block. All arithmetic is on int32s (`| 0`; a sum of
 * five int32s is exact in a double), which V8 keeps unboxed. The rounds are unrolled by eight so that the working
 * variables take turns instead of being shifted along each round: about 1.3 times as fast in V8.
 */
function blocks(state, w, bytes, pos, end) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let h0 = state[0], h1 = state[1], h2 = state[2], h3 = state[3];
  let h4 = state[4], h5 = state[5], h6 = state[6], h7 = state[7];
  while (end - pos >= 64) {
    for (let i = 0; i < 16; i++, pos += 4) w[i] = view.getInt32(pos); // big-endian
    for (let i = 16; i < 64; i++) {
      const x = w[i - 15];
      const y = w[i - 2];
      const s0 = (x >>> 7 | x << 25) ^ (x >>> 18 | x << 14) ^ (x >>> 3);
      const s1 = (y >>> 17 | y << 15) ^ (y >>> 19 | y << 13) ^ (y >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let a = h0, b = h1, c = h2, d = h3, e = h4, f = h5, g = h6, h = h7;
    for (let i = 0; i < 64; i += 8) {
      h = (h + ((e >>> 6 | e << 26) ^ (e >>> 11 | e << 21) ^ (e >>> 25 | e << 7)) + (g ^ (e & (f ^ g))) + K[i] + w[i]) | 0;
      d = (d + h) | 0;
      h = (h + ((a >>> 2 | a << 30) ^ (a >>> 13 | a << 19) ^ (a >>> 22 | a << 10)) + ((a & b) | (c & (a | b)))) | 0;
      g = (g + ((d >>> 6 | d << 26) ^ (d >>> 11 | d << 21) ^ (d >>> 25 | d << 7)) + (f ^ (d & (e ^ f))) + K[i + 1] + w[i + 1]) | 0;
      c = (c + g) | 0;
      g = (g + ((h >>> 2 | h << 30) ^ (h >>> 13 | h << 19) ^ (h >>> 22 | h << 10)) + ((h & a) | (b & (h | a)))) | 0;
      f = (f + ((c >>> 6 | c << 26) ^ (c >>> 11 | c << 21) ^ (c >>> 25 | c << 7)) + (e ^ (c & (d ^ e))) + K[i + 2] + w[i + 2]) | 0;
      b = (b + f) | 0;
      f = (f + ((g >>> 2 | g << 30) ^ (g >>> 13 | g << 19) ^ (g >>> 22 | g << 10)) + ((g & h) | (a & (g | h)))) | 0;
      e = (e + ((b >>> 6 | b << 26) ^ (b >>> 11 | b << 21) ^ (b >>> 25 | b << 7)) + (d ^ (b & (c ^ d))) + K[i + 3] + w[i + 3]) | 0;
      a = (a + e) | 0;
      e = (e + ((f >>> 2 | f << 30) ^ (f >>> 13 | f << 19) ^ (f >>> 22 | f << 10)) + ((f & g) | (h & (f | g)))) | 0;
      d = (d + ((a >>> 6 | a << 26) ^ (a >>> 11 | a << 21) ^ (a >>> 25 | a << 7)) + (c ^ (a & (b ^ c))) + K[i + 4] + w[i + 4]) | 0;
      h = (h + d) | 0;
      d = (d + ((e >>> 2 | e << 30) ^ (e >>> 13 | e << 19) ^ (e >>> 22 | e << 10)) + ((e & f) | (g & (e | f)))) | 0;
      c = (c + ((h >>> 6 | h << 26) ^ (h >>> 11 | h << 21) ^ (h >>> 25 | h << 7)) + (b ^ (h & (a ^ b))) + K[i + 5] + w[i + 5]) | 0;
      g = (g + c) | 0;
      c = (c + ((d >>> 2 | d << 30) ^ (d >>> 13 | d << 19) ^ (d >>> 22 | d << 10)) + ((d & e) | (f & (d | e)))) | 0;
      b = (b + ((g >>> 6 | g << 26) ^ (g >>> 11 | g << 21) ^ (g >>> 25 | g << 7)) + (a ^ (g & (h ^ a))) + K[i + 6] + w[i + 6]) | 0;
      f = (f + b) | 0;
      b = (b + ((c >>> 2 | c << 30) ^ (c >>> 13 | c << 19) ^ (c >>> 22 | c << 10)) + ((c & d) | (e & (c | d)))) | 0;
      a = (a + ((f >>> 6 | f << 26) ^ (f >>> 11 | f << 21) ^ (f >>> 25 | f << 7)) + (h ^ (f & (g ^ h))) + K[i + 7] + w[i + 7]) | 0;
      e = (e + a) | 0;
      a = (a + ((b >>> 2 | b << 30) ^ (b >>> 13 | b << 19) ^ (b >>> 22 | b << 10)) + ((b & c) | (d & (b | c)))) | 0;
    }
    h0 = (h0 + a) | 0;
    h1 = (h1 + b) | 0;
    h2 = (h2 + c) | 0;
    h3 = (h3 + d) | 0;
    h4 = (h4 + e) | 0;
    h5 = (h5 + f) | 0;
    h6 = (h6 + g) | 0;
    h7 = (h7 + h) | 0;
  }
  state[0] = h0;
  state[1] = h1;
  state[2] = h2;
  state[3] = h3;
  state[4] = h4;
  state[5] = h5;
  state[6] = h6;
  state[7] = h7;
  return pos;
}

/**
 * SHA-256 fed piece by piece: `new Sha256().update(a).update(b).digestHex()` equals the digest of a and b
 * joined. After `digest()`/`digestHex()` the hash is finished: `update()` throws, and the digest is the same on
 * every call. `clone()` copies a hash in progress (a checkpoint to go on from later).
 */
export class Sha256 {
  constructor() {
    this._h = Int32Array.from(INITIAL);
    this._w = new Int32Array(64);
    this._buf = new Uint8Array(64); // the bytes of a block not yet whole
    this._bufLen = 0;
    this._length = 0; // bytes hashed so far (a double is exact up to 8 PiB)
    this._digest = null;
  }

  /** How many bytes have been hashed. */
  get length() {
    return this._length;
  }

  /** Hash more bytes (an ArrayBuffer or any typed array / DataView); returns this. */
  update(data) {
    if (this._digest !== null) throw new Error('Sha256.update() after digest()');
    const bytes = asBytes(data);
    const n = bytes.byteLength;
    this._length += n;
    let pos = 0;
    if (this._bufLen > 0) {
      const take = Math.min(64 - this._bufLen, n);
      this._buf.set(bytes.subarray(0, take), this._bufLen);
      this._bufLen += take;
      pos = take;
      if (this._bufLen < 64) return this;
      blocks(this._h, this._w, this._buf, 0, 64);
      this._bufLen = 0;
    }
    pos = blocks(this._h, this._w, bytes, pos, n);
    if (pos < n) {
      this._buf.set(bytes.subarray(pos), 0);
      this._bufLen = n - pos;
    }
    return this;
  }

  /** The 32-byte digest (a fresh copy each call). */
  digest() {
    if (this._digest === null) {
      const bits = this._length * 8;
      const tail = new Uint8Array(this._bufLen < 56 ? 64 : 128);
      tail.set(this._buf.subarray(0, this._bufLen));
      tail[this._bufLen] = 0x80;
      const view = new DataView(tail.buffer);
      view.setUint32(tail.length - 8, Math.floor(bits / 2 ** 32));
      view.setUint32(tail.length - 4, bits >>> 0);
      blocks(this._h, this._w, tail, 0, tail.length);
      const out = new Uint8Array(32);
      const outView = new DataView(out.buffer);
      for (let i = 0; i < 8; i++) outView.setInt32(i * 4, this._h[i]);
      this._digest = out;
    }
    return this._digest.slice();
  }

  /** The digest as 64 lowercase hex digits. */
  digestHex() {
    let hex = '';
    for (const byte of this.digest()) hex += byte.toString(16).padStart(2, '0');
    return hex;
  }

  /** An independent copy of this hash in its current state. */
  clone() {
    const copy = new Sha256();
    copy._h.set(this._h);
    copy._buf.set(this._buf);
    copy._bufLen = this._bufLen;
    copy._length = this._length;
    copy._digest = this._digest === null ? null : this._digest.slice();
    return copy;
  }
}

/** The SHA-256 of `data`, as 64 lowercase hex digits. */
export function sha256Hex(data) {
  return new Sha256().update(data).digestHex();
}
