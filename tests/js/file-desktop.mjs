// A fake connection and a fake desktop for files.js's tests: page-side DataChannels with a real `bufferedAmount`
// that a "network" drains a little per turn of the event loop, and a desktop that implements docs/protocol.md §9
// in memory (held partial uploads, resume, atomic commit with free variants, downloads from an offset), with ways
// to drop the connection, corrupt a download or refuse a request.
import { createHash } from 'node:crypto';

export const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

const copy = (data) =>
  typeof data === 'string' ? data : new Uint8Array(data.buffer ?? data, data.byteOffset ?? 0, data.byteLength).slice();

/** The page's end of one channel. */
class PageChannel {
  constructor(net, label, options) {
    this.net = net;
    this.label = label;
    this.options = options;
    this.readyState = 'connecting';
    this.binaryType = 'blob';
    this.bufferedAmount = 0;
    this.bufferedAmountLowThreshold = 0;
    this.maxBuffered = 0;
    this.queue = []; // page → desktop, not yet (all) on the wire: {item, left}
    this.closeAfterQueue = false;
    this.remote = null; // the desktop's handler of this channel
  }

  send(data) {
    if (this.readyState !== 'open') throw new Error(`InvalidStateError: channel is ${this.readyState}`);
    const item = copy(data);
    const size = typeof item === 'string' ? Buffer.byteLength(item) : item.byteLength;
    if (typeof item !== 'string' && size > 65536) throw new Error(`a binary message of ${size} bytes`);
    this.queue.push({ item, left: size });
    this.bufferedAmount += size;
    this.maxBuffered = Math.max(this.maxBuffered, this.bufferedAmount);
    this.net.wake();
  }

  close() {
    if (this.readyState === 'closing' || this.readyState === 'closed') return;
    // Like a browser: what was already sent still goes out, then the channel closes.
    this.readyState = 'closing';
    this.closeAfterQueue = true;
    this.net.wake();
  }

  /** The desktop sends to the page. */
  deliver(data) {
    setImmediate(() => {
      if (this.readyState !== 'open' && this.readyState !== 'closing') return;
      if (typeof data === 'string') this.onmessage?.({ data });
      else this.onmessage?.({ data: copy(data).buffer });
    });
  }

  /** Closed by the desktop, or by the connection going: undelivered data is lost. */
  closedByPeer({ fire = true } = {}) {
    if (this.readyState === 'closed') return;
    this.readyState = 'closed';
    this.queue = [];
    this.bufferedAmount = 0;
    if (fire) setImmediate(() => this.onclose?.());
  }
}

/**
 * The link between page and desktop: `openChannel()` is the page's `createDataChannel('file', …)`; each turn of
 * the loop moves up to `bytesPerTurn` bytes of each channel's buffer to the desktop, firing
 * `bufferedamountlow` as a browser does.
 */
export class FakeNet {
  constructor(desktop, { bytesPerTurn = 256 * 1024 } = {}) {
    this.desktop = desktop;
    this.bytesPerTurn = bytesPerTurn;
    this.channels = [];
    this.up = true;
    this._scheduled = false;
  }

  openChannel = () => {
    if (!this.up) return null;
    const ch = new PageChannel(this, 'file', { ordered: true });
    this.channels.push(ch);
    setImmediate(() => {
      if (ch.readyState !== 'connecting') return;
      ch.readyState = 'open';
      ch.remote = this.desktop.accept(ch);
      ch.onopen?.();
    });
    return ch;
  };

  get open() {
    return this.channels.filter((c) => c.readyState === 'open' || c.readyState === 'closing');
  }

  wake() {
    if (this._scheduled) return;
    this._scheduled = true;
    setImmediate(() => this._pump());
  }

  _pump() {
    this._scheduled = false;
    let more = false;
    for (const ch of this.channels) {
      if (ch.remote === null || ch.readyState === 'closed') continue;
      let budget = this.bytesPerTurn;
      const before = ch.bufferedAmount;
      while (ch.queue.length > 0 && budget > 0) {
        const head = ch.queue[0]; // a message reaches the desktop once all its bytes went
        const take = Math.min(budget, head.left);
        head.left -= take;
        ch.bufferedAmount -= take;
        budget -= take;
        if (head.left > 0) break;
        ch.queue.shift();
        ch.remote.receive(head.item);
        if (ch.readyState === 'closed') break; // the desktop closed it
      }
      if (before > ch.bufferedAmountLowThreshold && ch.bufferedAmount <= ch.bufferedAmountLowThreshold) {
        setImmediate(() => ch.readyState !== 'closed' && ch.onbufferedamountlow?.());
      }
      if (ch.queue.length > 0) more = true;
      else if (ch.closeAfterQueue && ch.readyState === 'closing') {
        ch.readyState = 'closed';
        ch.remote.closed();
        setImmediate(() => ch.onclose?.());
      }
    }
    if (more) this.wake();
  }

  /** The connection drops: every channel closes (`fire`: with a close event, which a browser may not send). */
  drop({ fire = true } = {}) {
    this.up = false;
    for (const ch of this.channels) {
      if (ch.readyState === 'closed') continue;
      ch.closedByPeer({ fire });
      ch.remote?.closed();
    }
  }

  restore() {
    this.up = true;
  }
}

/** A desktop's transfer folder and its end of each `file` channel, after docs/protocol.md §9. */
export class FakeDesktop {
  constructor() {
    this.files = new Map(); // name -> Uint8Array (or Buffer)
    this.held = new Map(); // `${id}-${size}` -> {chunks, length}
    this.requests = []; // every request received, in order
    this.messages = []; // every JSON message received
    this.refuse = null; // a reason to answer every request with
    this.silent = false; // never answer
    this.hold = (n) => n; // how much of an interrupted upload it keeps: (received) => kept
    this.corrupt = null; // (name) => index of a byte to flip in what it sends
    this.dropAfter = null; // {bytes, net}: drop the connection after sending this many bytes of a download
    this.chunkSize = 65536;
  }

  accept(ch) {
    const desktop = this;
    let job = null;
    return {
      receive(item) {
        if (typeof item !== 'string') {
          if (job?.kind !== 'upload' || job.ended) throw new Error('binary data outside an upload');
          job.part.chunks.push(item);
          job.part.length += item.byteLength;
          return;
        }
        const msg = JSON.parse(item);
        desktop.messages.push(msg);
        if (job === null) {
          desktop.requests.push(msg);
          if (desktop.silent) {
            job = { kind: 'silent' };
            return;
          }
          if (desktop.refuse !== null) return desktop._error(ch, desktop.refuse);
          if (msg.type === 'upload') job = desktop._upload(ch, msg);
          else if (msg.type === 'download') job = desktop._download(ch, msg);
          else desktop._error(ch, 'expected a request');
          return;
        }
        if (msg.type === 'cancel' && job.kind === 'upload') {
          desktop.held.delete(job.key);
          job.cancelled = true;
        } else if (msg.type === 'end' && job.kind === 'upload') {
          job.ended = true;
          desktop._commit(ch, job, msg);
        }
      },
      closed() {
        // Mid-upload without `cancel`: the held data stays, cut to what the desktop keeps.
        if (job?.kind === 'upload' && !job.cancelled && desktop.held.has(job.key)) {
          const part = desktop.held.get(job.key);
          const kept = Math.min(part.length, desktop.hold(part.length));
          const all = join(part.chunks).subarray(0, kept);
          desktop.held.set(job.key, { chunks: [all], length: kept });
        }
        if (job !== null) job.gone = true;
      },
    };
  }

  _send(ch, obj) {
    ch.deliver(ArrayBuffer.isView(obj) ? obj : JSON.stringify(obj));
  }

  _error(ch, reason) {
    this._send(ch, { type: 'error', reason });
    this._close(ch);
    return { kind: 'failed' };
  }

  _close(ch) {
    setImmediate(() => ch.closedByPeer());
  }

  _upload(ch, msg) {
    const key = `${msg.id}-${msg.size}`;
    if (!this.held.has(key)) this.held.set(key, { chunks: [], length: 0 });
    const part = this.held.get(key);
    this._send(ch, { type: 'ready', offset: part.length });
    return { kind: 'upload', key, msg, part, ended: false, cancelled: false };
  }

  _commit(ch, job, end) {
    const data = join(job.part.chunks);
    this.held.delete(job.key);
    if (data.byteLength !== job.msg.size || sha256(data) !== end.sha256) {
      this._error(ch, 'the upload arrived damaged (size or SHA-256 wrong); nothing was saved');
      return;
    }
    let name = job.msg.name;
    if (!job.msg.replace) {
      const dot = name.lastIndexOf('.');
      const [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ''];
      for (let n = 1; this.files.has(name); n++) name = `${stem} (${n})${ext}`;
    }
    this.files.set(name, data);
    this._send(ch, { type: 'done', name });
    this._close(ch);
  }

  _download(ch, msg) {
    const data = this.files.get(msg.name);
    if (data === undefined) return this._error(ch, `there is no file called ${msg.name}`);
    const job = { kind: 'download', gone: false };
    this._send(ch, { type: 'file', name: msg.name, size: data.byteLength });
    const flip = this.corrupt?.(msg.name) ?? null;
    let sent = 0;
    for (let pos = msg.offset; pos < data.byteLength; pos += this.chunkSize) {
      const piece = new Uint8Array(data.subarray(pos, pos + this.chunkSize)); // a copy (Buffer's slice is a view)
      if (flip !== null && flip >= pos && flip < pos + piece.byteLength) piece[flip - pos] ^= 0x01;
      this._send(ch, piece);
      sent += piece.byteLength;
      if (this.dropAfter !== null && sent >= this.dropAfter.bytes) {
        const { net } = this.dropAfter;
        this.dropAfter = null;
        setImmediate(() => net.drop());
        return job;
      }
    }
    this._send(ch, { type: 'end', sha256: sha256(data) });
    this._close(ch);
    return job;
  }
}

export function join(chunks) {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let pos = 0;
  for (const c of chunks) {
    out.set(c, pos);
    pos += c.byteLength;
  }
  return out;
}

/** A File-like: `name`, `size`, `slice(a, b).arrayBuffer()`, counting the bytes read. */
export function fakeFile(name, bytes) {
  const blob = new Blob([bytes]);
  const file = {
    name,
    size: blob.size,
    bytesRead: 0,
    slice(a, b) {
      const part = blob.slice(a, b);
      return {
        arrayBuffer: async () => {
          file.bytesRead += part.size;
          return part.arrayBuffer();
        },
      };
    },
  };
  return file;
}
