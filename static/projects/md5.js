/* MD5 (RFC 1321) over bytes, written for dxweb: the server checks each upload part's md5. */
(function (root) {
  "use strict";

  const SHIFTS = [
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
    5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
    4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
    6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
  ];
  const K = new Int32Array(64);
  for (let i = 0; i < 64; i++) K[i] = Math.floor(Math.abs(Math.sin(i + 1)) * 4294967296) | 0;
  // Message word used at each step: i, 5i+1, 3i+5, 7i (mod 16) for the four rounds.
  const INDEX = new Uint8Array(64);
  for (let i = 0; i < 64; i++) {
    INDEX[i] = i < 16 ? i : i < 32 ? (5 * i + 1) & 15 : i < 48 ? (3 * i + 5) & 15 : (7 * i) & 15;
  }

  class MD5 {
    constructor() {
      this.state = new Int32Array([0x67452301, 0xefcdab89 | 0, 0x98badcfe | 0, 0x10325476]);
      this.block = new Uint8Array(64);
      this.blockLength = 0;
      this.length = 0;
      this.words = new Int32Array(16);
    }

    compress(bytes, offset) {
      const w = this.words;
      for (let j = 0; j < 16; j++) {
        const o = offset + j * 4;
        w[j] = bytes[o] | (bytes[o + 1] << 8) | (bytes[o + 2] << 16) | (bytes[o + 3] << 24);
      }
      const s = this.state;
      let a = s[0], b = s[1], c = s[2], d = s[3];
      for (let i = 0; i < 64; i++) {
        let f;
        if (i < 16) f = (b & c) | (~b & d);
        else if (i < 32) f = (d & b) | (~d & c);
        else if (i < 48) f = b ^ c ^ d;
        else f = c ^ (b | ~d);
        const x = (a + f + K[i] + w[INDEX[i]]) | 0;
        const r = SHIFTS[i];
        a = d;
        d = c;
        c = b;
        b = (b + ((x << r) | (x >>> (32 - r)))) | 0;
      }
      s[0] = (s[0] + a) | 0;
      s[1] = (s[1] + b) | 0;
      s[2] = (s[2] + c) | 0;
      s[3] = (s[3] + d) | 0;
    }

    update(bytes) {
      let offset = 0;
      this.length += bytes.length;
      if (this.blockLength) {
        const take = Math.min(64 - this.blockLength, bytes.length);
        this.block.set(bytes.subarray(0, take), this.blockLength);
        this.blockLength += take;
        offset = take;
        if (this.blockLength < 64) return this;
        this.compress(this.block, 0);
        this.blockLength = 0;
      }
      for (; offset + 64 <= bytes.length; offset += 64) this.compress(bytes, offset);
      this.block.set(bytes.subarray(offset), 0);
      this.blockLength = bytes.length - offset;
      return this;
    }

    hex() {
      const bits = this.length * 8;
      const tail = new Uint8Array(this.blockLength < 56 ? 64 : 128);
      tail.set(this.block.subarray(0, this.blockLength));
      tail[this.blockLength] = 0x80;
      const view = new DataView(tail.buffer);
      view.setUint32(tail.length - 8, bits >>> 0, true);
      view.setUint32(tail.length - 4, Math.floor(bits / 4294967296), true);
      for (let o = 0; o < tail.length; o += 64) this.compress(tail, o);
      let out = "";
      for (let i = 0; i < 4; i++) {
        for (let k = 0; k < 4; k++) out += ((this.state[i] >>> (8 * k)) & 0xff).toString(16).padStart(2, "0");
      }
      return out;
    }
  }

  /** Return the md5 of a Uint8Array as 32 hexadecimal digits. */
  MD5.hex = (bytes) => new MD5().update(bytes).hex();

  root.MD5 = MD5;
  if (typeof module !== "undefined") module.exports = MD5;
})(typeof window !== "undefined" ? window : globalThis);
