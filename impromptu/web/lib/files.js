// File transfers between the page and the desktop's transfer folder (docs/protocol.md §9): one reliable `file`
// DataChannel per attempt, uploads read in 64 KiB slices and sent under backpressure, both directions hashed as
// they go (SHA-256), and resumed — same upload id, or the download's offset — when a connection drops. DOM-free:
// the page hands in how to open a channel and how to save a Blob, so `node --test` drives it with fakes.

import { Sha256 } from './sha256.js';

/** Bytes per binary message and per read of the file (§9: at most 65536). */
export const CHUNK = 64 * 1024;
/** Never more than this many bytes waiting in a channel's buffer. */
export const HIGH_WATER = 1024 * 1024;
/** Sending goes on once the buffer drained to this (`bufferedAmountLowThreshold`). */
export const LOW_WATER = 256 * 1024;
/** Reads of the file in flight ahead of the one being sent. */
const READ_AHEAD = 4;
/** An upload keeps its hash's state every this many bytes, so that a resume re-reads at most this much. */
const CHECKPOINT_EVERY = 16 * 1024 * 1024;
/** A download gathers its received pieces into one Blob every this many bytes (a browser may keep it on disk). */
const BLOB_EVERY = 16 * 1024 * 1024;
/** Transfers with a channel at once; more wait, queued, in the order they were asked for. */
export const MAX_ACTIVE = 4;
/** Attempts in a row, while connected, that the desktop closes or leaves unanswered before a transfer fails. */
export const MAX_ATTEMPTS = 5;
const MAX_REASON = 200;
const HEX64 = /^[0-9a-f]{64}$/;
const RATE_WINDOW_MS = 3000;
const PROGRESS_EVERY_MS = 100;

/** 128 random bits as 32 lowercase hex digits (an upload's `id`). */
export function randomId(getRandomValues = (a) => globalThis.crypto.getRandomValues(a)) {
  const bytes = getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** `n` bytes for people: "0 B", "999 B", "1.5 kB", "12 MB", "4.29 GB" (decimal units, three digits). */
export function formatBytes(n) {
  if (!Number.isFinite(n)) return '';
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n;
  let unit = '';
  for (const u of units) {
    v /= 1000;
    unit = u;
    if (v < 999.5) break;
  }
  return `${v < 9.995 ? v.toFixed(2) : v < 99.95 ? v.toFixed(1) : v.toFixed(0)} ${unit}`;
}

/** A rate in bytes per second as "3.2 MB/s", or '' when unknown. */
export function formatRate(bytesPerSecond) {
  if (bytesPerSecond === null || !Number.isFinite(bytesPerSecond)) return '';
  return `${(bytesPerSecond / 1e6).toFixed(bytesPerSecond < 10e6 ? 1 : 0)} MB/s`;
}

/** Seconds left as "12 s", "3 min 5 s", "2 h 10 min", or '' when unknown. */
export function formatEta(seconds) {
  if (seconds === null || !Number.isFinite(seconds) || seconds < 0) return '';
  const s = Math.ceil(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** The slices `[from, to)` of `file` as Uint8Arrays of at most CHUNK bytes, read a few ahead. */
async function* readSlices(file, from, to) {
  const reads = [];
  let next = from;
  for (;;) {
    while (reads.length < READ_AHEAD && next < to) {
      const end = Math.min(to, next + CHUNK);
      const read = file.slice(next, end).arrayBuffer();
      read.catch(() => {}); // one left behind when the transfer stops is nobody's error
      reads.push({ read, length: end - next });
      next = end;
    }
    if (reads.length === 0) return;
    const { read, length } = reads.shift();
    const bytes = new Uint8Array(await read);
    if (bytes.byteLength !== length) throw new Error('the file changed while it was being read');
    yield bytes;
  }
}

function reasonText(reason, fallback) {
  return typeof reason === 'string' && reason.trim() !== '' ? reason.slice(0, MAX_REASON) : fallback;
}

/**
 * One upload or download, from the moment it is asked for until it is `done`, `failed` or `cancelled`. In between
 * it is `running` (a channel carries it) or `waiting` (`detail`: 'queued' for a free slot, or 'reconnecting'
 * after its channel or the connection dropped; it starts again by itself).
 */
export class Transfer {
  constructor(manager, direction, name, size) {
    this.id = randomId(manager._getRandomValues);
    this.direction = direction;
    this.name = name;
    this.size = size; // null for a download until the desktop said
    this.state = 'waiting';
    this.detail = 'queued';
    this.error = '';
    this.savedAs = null;
    this.offsets = []; // where each attempt started (`ready` / the download's `offset`): > 0 means resumed
    this._m = manager;
    this._att = null; // the current attempt: {ch, phase, answered, dead, ...}
    this._notBefore = 0;
    this._fruitless = 0; // attempts in a row the desktop never answered (or closed at once)
    this._samples = []; // [time, bytes]: for the rate
    this._lastEmit = -Infinity;
  }

  get finished() {
    return this.state === 'done' || this.state === 'failed' || this.state === 'cancelled';
  }

  /** Bytes transferred: for an upload, those the channel has passed on (sent less still buffered). */
  get bytes() {
    return 0;
  }

  /** Bytes per second over the last few seconds, or null when not running or not known yet. */
  get rate() {
    if (this.state !== 'running' || this._samples.length === 0) return null;
    const [t0, b0] = this._samples[0];
    const dt = this._m._now() - t0;
    return dt < 500 ? null : ((this.bytes - b0) * 1000) / dt;
  }

  /** Seconds left at the current rate, or null. */
  get eta() {
    const rate = this.rate;
    if (rate === null || this.size === null) return null;
    if (rate <= 0) return Infinity;
    return (this.size - this.bytes) / rate;
  }

  /** A plain copy of what a page or a test wants to know. */
  snapshot() {
    const bytes = this.bytes;
    const eta = this.eta;
    return {
      id: this.id,
      name: this.name,
      direction: this.direction,
      state: this.state,
      detail: this.detail,
      size: this.size,
      bytes,
      sent: this.direction === 'upload' ? bytes : 0,
      received: this.direction === 'download' ? bytes : 0,
      error: this.error,
      savedAs: this.savedAs,
      offsets: [...this.offsets],
      rate: this.rate,
      eta: Number.isFinite(eta) ? eta : null,
    };
  }

  /** Stop it for good (an upload tells the desktop to delete what it holds); false when already finished. */
  cancel() {
    if (this.finished) return false;
    this._onCancel(this._att);
    this._end('cancelled');
    return true;
  }

  // ---- attempts ----

  /** Open a channel and start an attempt; false when there is no connection to open one on. */
  _start() {
    const ch = this._m._openChannel();
    if (ch === null) return false;
    const att = { ch, phase: 'request', answered: false, dead: false, wake: null, pos: 0 };
    this._att = att;
    this._samples = [];
    this._setState('running', '');
    ch.binaryType = 'arraybuffer';
    ch.bufferedAmountLowThreshold = LOW_WATER;
    ch.onopen = () => {
      if (!att.dead) this._request(att);
    };
    ch.onmessage = (ev) => {
      if (att.dead) return;
      if (typeof ev.data === 'string') this._onJson(att, ev.data);
      else this._onBinary(att, ev.data);
    };
    ch.onbufferedamountlow = () => {
      const wake = att.wake;
      att.wake = null;
      wake?.();
    };
    ch.onclose = () => this._interrupt(att, 'the desktop closed the transfer');
    ch.onerror = (ev) => this._m._log('file:channel-error', `a file channel failed: ${ev?.error?.message ?? 'error'}`);
    att.timer = setTimeout(() => this._interrupt(att, 'the desktop did not answer'), this._m._answerTimeoutMs);
    if (ch.readyState === 'open') this._request(att);
    return true;
  }

  _onJson(att, text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      msg = null;
    }
    if (msg === null || typeof msg !== 'object' || typeof msg.type !== 'string') {
      this._fail('the desktop sent something that is not a file-transfer message');
      return;
    }
    if (msg.type === 'error') {
      this._fail(reasonText(msg.reason, 'the desktop reported an error'), { fromDesktop: true });
      return;
    }
    this._onMessage(att, msg);
  }

  /** The desktop answered the request: the attempt counts as taken, whatever happens next. */
  _answered(att) {
    att.answered = true;
    this._fruitless = 0;
    clearTimeout(att.timer);
  }

  /**
   * This attempt's channel closed, or the connection went (`counts: false`), before the transfer finished: wait
   * and start again. Attempts the desktop ends before answering, with the connection up, count; after
   * MAX_ATTEMPTS of them in a row the transfer fails instead.
   */
  _interrupt(att, reason, { counts = true } = {}) {
    if (att !== this._att || this.finished) return;
    this._detach();
    if (counts && !att.answered) {
      this._fruitless += 1;
      if (this._fruitless >= MAX_ATTEMPTS) {
        this._fail(`${reason} (${this._fruitless} attempts)`, { fromDesktop: true });
        return;
      }
    }
    this._notBefore = counts ? this._m._now() + this._m._retryDelay(this._fruitless) : 0;
    this._setState('waiting', 'reconnecting');
    this._m._kick();
  }

  /** The transfer failed; unless the desktop said so itself (`fromDesktop`), it is told to drop what it holds. */
  _fail(reason, { fromDesktop = false } = {}) {
    if (this.finished) return;
    this._m._log('file:failed', `a file transfer failed: ${reason}`);
    if (!fromDesktop) this._onFail(this._att);
    this.error = reason;
    this._end('failed');
  }

  _end(state, savedAs = null) {
    this._detach();
    this.savedAs = savedAs;
    this._release();
    this._setState(state, '');
    this._m._kick();
  }

  /** Let go of the current attempt's channel (closing it: what was sent before still goes out first). */
  _detach() {
    const att = this._att;
    if (att === null) return;
    this._last = this.bytes; // what `bytes` says while there is no attempt
    this._att = null;
    att.dead = true;
    clearTimeout(att.timer);
    const { ch } = att;
    ch.onopen = ch.onmessage = ch.onclose = ch.onerror = ch.onbufferedamountlow = null;
    att.wake?.();
    try {
      ch.close();
    } catch {
      // already closed
    }
  }

  /** Send one JSON message on the attempt's channel; false if it could not go. */
  _sendJson(att, message) {
    try {
      att.ch.send(JSON.stringify(message));
      return true;
    } catch {
      return false;
    }
  }

  _setState(state, detail) {
    this.state = state;
    this.detail = detail;
    this._m._changed(this, 'state');
  }

  /** Note progress: a rate sample and, at most every PROGRESS_EVERY_MS, a change for the page. */
  _progress() {
    const now = this._m._now();
    if (now - this._lastEmit < PROGRESS_EVERY_MS) return;
    this._lastEmit = now;
    this._samples.push([now, this.bytes]);
    // Keep the newest sample at least RATE_WINDOW_MS old as the start of the window.
    while (this._samples.length > 1 && now - this._samples[1][0] >= RATE_WINDOW_MS) this._samples.shift();
    this._m._changed(this, 'progress');
  }

  // Per direction:
  _request(_att) {}
  _onMessage(_att, _msg) {}
  _onBinary(_att, _data) {}
  _onCancel(_att) {}
  _onFail(_att) {}
  _release() {}
}

/** A file going to the desktop (`upload`, `ready`, the bytes, `end`, `done`). */
export class Upload extends Transfer {
  constructor(manager, file, replace) {
    super(manager, 'upload', String(file.name), file.size);
    this.file = file;
    this.replace = replace;
    this._requested = false; // the desktop may hold some of it, to be deleted on cancel
    this._hash = new Sha256();
    this._checkpoints = [new Sha256()]; // hashes at increasing lengths, to resume from the one before an offset
    this._last = 0;
  }

  get bytes() {
    if (this.state === 'done') return this.size;
    const att = this._att;
    if (att === null || att.phase === 'request') return this._last;
    return Math.max(0, att.pos - (att.ch.bufferedAmount ?? 0));
  }

  _request(att) {
    if (att.phase !== 'request' || att.requested) return;
    att.requested = true;
    const { id, name, size, replace } = this;
    this._requested = true;
    if (!this._sendJson(att, { type: 'upload', id, name, size, replace })) {
      this._interrupt(att, 'the transfer’s channel closed');
    }
  }

  _onMessage(att, msg) {
    if (msg.type === 'ready' && att.phase === 'request') {
      const offset = msg.offset;
      if (!Number.isSafeInteger(offset) || offset < 0 || offset > this.size) {
        this._fail('the desktop asked to resume the upload from a place outside the file');
        return;
      }
      this._answered(att);
      this.offsets.push(offset);
      att.phase = 'sending';
      att.pos = offset;
      this._send(att, offset).catch((err) => {
        if (att.dead) return;
        this._fail(`could not read ${this.name}: ${err?.message ?? err} (was it moved or changed?)`);
      });
    } else if (msg.type === 'done' && (att.phase === 'ended' || att.phase === 'request')) {
      // Straight after the request: an earlier attempt was committed, and its `done` was lost with its connection.
      const name = typeof msg.name === 'string' && msg.name !== '' ? msg.name : this.name;
      this._end('done', name);
    } else {
      this._fail(`the desktop sent an unexpected “${String(msg.type).slice(0, 40)}” during the upload`);
    }
  }

  _onBinary() {
    this._fail('the desktop sent data during an upload');
  }

  async _send(att, offset) {
    await this._hashTo(att, offset);
    if (att.dead) return;
    const { ch } = att;
    for await (const bytes of readSlices(this.file, offset, this.size)) {
      if (att.dead) return;
      this._hashMore(bytes);
      while (ch.bufferedAmount + bytes.byteLength > HIGH_WATER) {
        await this._drained(att);
        if (att.dead) return;
        this._progress();
      }
      try {
        ch.send(bytes);
      } catch {
        this._interrupt(att, 'the transfer’s channel closed');
        return;
      }
      att.pos += bytes.byteLength;
      this._progress();
    }
    if (att.dead) return;
    att.phase = 'ended';
    // A copy: should the `done` be lost, a resume at offset == size sends this `end` again.
    if (!this._sendJson(att, { type: 'end', sha256: this._hash.clone().digestHex() })) {
      this._interrupt(att, 'the transfer’s channel closed');
    }
  }

  /** Resolve when the channel's buffer drained to LOW_WATER (or the attempt ended). */
  _drained(att) {
    return new Promise((resolve) => {
      att.wake = resolve;
      if (att.ch.bufferedAmount <= att.ch.bufferedAmountLowThreshold) resolve();
    });
  }

  _hashMore(bytes) {
    this._hash.update(bytes);
    const last = this._checkpoints.at(-1).length;
    if (Math.floor(this._hash.length / CHECKPOINT_EVERY) > Math.floor(last / CHECKPOINT_EVERY)) {
      this._checkpoints.push(this._hash.clone());
    }
  }

  /**
   * Make the running hash cover exactly the first `offset` bytes: when the desktop holds a different amount than
   * was hashed (it never got what was still buffered when the channel dropped), go back to the last checkpoint at
   * or before `offset` and hash the file from there to `offset` again.
   */
  async _hashTo(att, offset) {
    if (this._hash.length === offset) return;
    while (this._checkpoints.at(-1).length > offset) this._checkpoints.pop();
    this._hash = this._checkpoints.at(-1).clone();
    for await (const bytes of readSlices(this.file, this._hash.length, offset)) {
      if (att.dead) return;
      this._hashMore(bytes);
    }
  }

  _onCancel(att) {
    if (att !== null && att.requested) {
      // On the same ordered channel, after whatever is still buffered; closing lets that go out first.
      if (this._sendJson(att, { type: 'cancel' })) return;
    }
    if (this._requested) this._m._discard(this);
  }

  _onFail(att) {
    // Our failure (the file could not be read, the desktop's answer made no sense): it need not keep anything.
    if (att !== null && att.requested) this._sendJson(att, { type: 'cancel' });
  }

  _release() {
    this._checkpoints = [];
  }
}

/** A file coming from the desktop (`download`, `file`, the bytes, `end`), saved only once its hash checks. */
export class Download extends Transfer {
  constructor(manager, name) {
    super(manager, 'download', name, null);
    this._hash = new Sha256();
    this._received = 0;
    this._savedName = null; // the name the desktop's `file` gave
    this._pieces = []; // ArrayBuffers not yet in a Blob
    this._pieceBytes = 0;
    this._blobs = [];
  }

  get bytes() {
    return this._received;
  }

  _request(att) {
    if (att.requested) return;
    att.requested = true;
    this.offsets.push(this._received);
    if (!this._sendJson(att, { type: 'download', name: this.name, offset: this._received })) {
      this._interrupt(att, 'the transfer’s channel closed');
    }
  }

  _onMessage(att, msg) {
    if (msg.type === 'file' && att.phase === 'request') {
      const { size, name } = msg;
      if (!Number.isSafeInteger(size) || size < 0) {
        this._fail('the desktop announced a file of an impossible size');
      } else if ((this.size !== null && size !== this.size) || size < this._received) {
        this._fail('the file changed on the desktop while it was being downloaded; download it again');
      } else {
        this._answered(att);
        this.size = size;
        if (typeof name === 'string' && name !== '') this._savedName = name;
        att.phase = 'receiving';
      }
    } else if (msg.type === 'end' && att.phase === 'receiving') {
      this._finish(msg.sha256);
    } else {
      this._fail(`the desktop sent an unexpected “${String(msg.type).slice(0, 40)}” during the download`);
    }
  }

  _onBinary(att, data) {
    if (att.phase !== 'receiving') {
      this._fail('the desktop sent data before saying which file');
      return;
    }
    const buffer = data instanceof ArrayBuffer ? data : null;
    if (buffer === null) {
      this._fail('the desktop sent data in a form this page cannot read');
      return;
    }
    if (this._received + buffer.byteLength > this.size) {
      this._fail('the desktop sent more than the file’s size; nothing was saved');
      return;
    }
    this._hash.update(buffer);
    this._received += buffer.byteLength;
    this._pieces.push(buffer);
    this._pieceBytes += buffer.byteLength;
    if (this._pieceBytes >= BLOB_EVERY) {
      this._blobs.push(new this._m._Blob(this._pieces));
      this._pieces = [];
      this._pieceBytes = 0;
    }
    this._progress();
  }

  _finish(sha256) {
    if (this._received !== this.size) {
      this._fail(`the desktop ended the download after ${this._received} of ${this.size} bytes; nothing was saved`);
      return;
    }
    if (typeof sha256 !== 'string' || !HEX64.test(sha256) || sha256 !== this._hash.digestHex()) {
      this._fail('the file arrived damaged (its SHA-256 does not match); nothing was saved');
      return;
    }
    const name = this._savedName ?? this.name;
    const blob = new this._m._Blob([...this._blobs, ...this._pieces]);
    try {
      this._m._save(blob, name);
    } catch (err) {
      this._fail(`could not save ${name}: ${err?.message ?? err}`);
      return;
    }
    this._end('done', name);
  }

  _release() {
    this._pieces = [];
    this._blobs = [];
  }
}

/**
 * The page's file transfers with the desktop it is connected to, and the desktop's `file.list`.
 *
 * The page tells it about the connection — `connected(available)` when the control channel opens (`available`:
 * false behind a relay, which carries no files), `disconnected()` when it closes — and passes on each `file.list`
 * (`setList`). It needs `openChannel()` (a new `file` DataChannel on the current connection, or null),
 * `send(message)` (a control message), `save(blob, name)`, and is told of changes by `onChange(transfer, what)`
 * (`what`: 'state', 'progress'; transfer null and 'list' for a new list).
 */
export class FileTransfers {
  constructor({
    openChannel,
    send = () => false,
    save,
    onChange = () => {},
    log = () => {},
    now = () => Date.now(),
    getRandomValues = (a) => globalThis.crypto.getRandomValues(a),
    BlobImpl = globalThis.Blob,
    maxActive = MAX_ACTIVE,
    answerTimeoutMs = 20_000,
    retryDelay = (n) => Math.min(10_000, 500 * 2 ** n),
  }) {
    this._open = openChannel;
    this._send = send;
    this._save = save;
    this._onChange = onChange;
    this._log = log;
    this._now = now;
    this._getRandomValues = getRandomValues;
    this._Blob = BlobImpl;
    this._maxActive = maxActive;
    this._answerTimeoutMs = answerTimeoutMs;
    this._retryDelay = retryDelay;
    this._list = null;
    this._transfers = [];
    this._discards = []; // cancelled uploads whose data the desktop may still hold: told to delete it on reconnect
    this._online = false;
    this._available = true;
    this._kickTimer = null;
    this._kicking = false;
    this._kickAgain = false;
  }

  /** The desktop's latest `file.list` (protocol.js's parsed form), or null when it sent none on this connection. */
  get list() {
    return this._list;
  }

  /** Whether the desktop shares files with this page at all. */
  get enabled() {
    return this._available && this._list !== null && this._list.enabled;
  }

  /** Whether this page may upload. */
  get canUpload() {
    return this.enabled && this._list.upload;
  }

  /** Every transfer asked for and not removed, oldest first. */
  get transfers() {
    return [...this._transfers];
  }

  get(id) {
    return this._transfers.find((t) => t.id === id) ?? null;
  }

  /** The control channel opened: a fresh connection. Attempts on the old one are over; waiting ones go on. */
  connected(available = true) {
    for (const t of this._transfers) if (t._att !== null) t._interrupt(t._att, 'the connection changed', { counts: false });
    this._online = true;
    this._available = available;
    // The list stays until the desktop sends a new one (at once): no flicker of the page's Files button.
    if (!available) {
      this._setList(null);
      for (const t of this._transfers) {
        if (!t.finished) t._fail('this connection goes through a relay, which carries no files');
      }
      this._discards = [];
      return;
    }
    this._flushDiscards();
    this._kick();
  }

  /** The connection closed: every transfer running on it waits for the next one. */
  disconnected() {
    this._online = false;
    clearTimeout(this._kickTimer);
    for (const t of this._transfers) if (t._att !== null) t._interrupt(t._att, 'the connection was lost', { counts: false });
  }

  /** A `file.list` from the desktop (already validated by protocol.js). Ignored behind a relay. */
  setList(msg) {
    if (this._available) this._setList(msg);
  }

  /** Ask the desktop for its list again (it answers with a `file.list`). */
  refresh() {
    return this._online && this._available && this._send({ type: 'file.list' });
  }

  /**
   * Send `file` (a File, or anything with `name`, `size`, `slice(a, b).arrayBuffer()`) to the desktop. `replace`
   * overwrites a file of that name instead of taking a free variant of it. Returns the Transfer, which may have
   * failed at once (no uploads here, or too big).
   */
  upload(file, { replace = false } = {}) {
    const t = new Upload(this, file, replace === true);
    this._add(t);
    const list = this._list;
    if (list !== null && !list.enabled) t._fail('this desktop shares no files');
    else if (list !== null && !list.upload) t._fail('this link may not upload files to the desktop');
    else if (list !== null && file.size > list.max_size) {
      t._fail(`${t.name} is ${formatBytes(file.size)}: larger than the desktop accepts (${formatBytes(list.max_size)})`);
    } else this._kick();
    return t;
  }

  /** Fetch the desktop's file `name` and save it. Returns the Transfer. */
  download(name) {
    const t = new Download(this, String(name));
    this._add(t);
    if (this._list !== null && !this._list.enabled) t._fail('this desktop shares no files');
    else this._kick();
    return t;
  }

  /** Cancel transfer `id`; false when there is none, or it already finished. */
  cancel(id) {
    return this.get(id)?.cancel() ?? false;
  }

  /** Forget a finished transfer (the page's "clear"); false when there is none or it is not finished. */
  remove(id) {
    const t = this.get(id);
    if (t === null || !t.finished) return false;
    this._transfers.splice(this._transfers.indexOf(t), 1);
    this._changed(t, 'state');
    return true;
  }

  // ---- internal ----

  _add(t) {
    this._transfers.push(t);
    this._changed(t, 'state');
  }

  _setList(msg) {
    this._list = msg;
    this._changed(null, 'list');
  }

  _changed(t, what) {
    try {
      this._onChange(t, what);
    } catch (err) {
      this._log('file:onchange', `a file-transfer listener failed: ${err?.message ?? err}`);
    }
  }

  _openChannel() {
    if (!this._online || !this._available) return null;
    let ch = null;
    try {
      ch = this._open();
    } catch (err) {
      this._log('file:open', `could not open a file channel: ${err?.message ?? err}`);
    }
    return ch ?? null;
  }

  /** Start waiting transfers while there are free slots; come back when a delayed retry is due. */
  _kick() {
    // A transfer that fails or drops while being started kicks again: run that after this round, not inside it.
    if (this._kicking) {
      this._kickAgain = true;
      return;
    }
    this._kicking = true;
    try {
      do {
        this._kickAgain = false;
        this._kickOnce();
      } while (this._kickAgain);
    } finally {
      this._kicking = false;
    }
  }

  _kickOnce() {
    clearTimeout(this._kickTimer);
    this._kickTimer = null;
    if (!this._online || !this._available) return;
    const now = this._now();
    let active = this._transfers.filter((t) => t._att !== null).length;
    let soonest = Infinity;
    for (const t of this._transfers) {
      if (active >= this._maxActive) break;
      if (t.state !== 'waiting' || t._att !== null) continue;
      if (t._notBefore > now) {
        soonest = Math.min(soonest, t._notBefore);
        continue;
      }
      if (!t._start()) return; // no connection to open a channel on after all: connected() starts them again
      active += 1;
    }
    if (soonest !== Infinity) this._kickTimer = setTimeout(() => this._kick(), soonest - now);
  }

  _discard(upload) {
    this._discards.push({ id: upload.id, name: upload.name, size: upload.size, replace: upload.replace });
    if (this._online) this._flushDiscards();
  }

  /** Tell the desktop to delete what it holds of uploads cancelled while there was no channel to say so on. */
  _flushDiscards() {
    while (this._discards.length > 0) {
      const ch = this._openChannel();
      if (ch === null) return;
      const { id, name, size, replace } = this._discards.shift();
      const go = () => {
        try {
          ch.send(JSON.stringify({ type: 'upload', id, name, size, replace }));
          ch.send(JSON.stringify({ type: 'cancel' }));
        } catch {
          // gone again: the desktop deletes it after 10 minutes anyway
        }
        ch.close();
      };
      ch.onmessage = ch.onerror = null;
      if (ch.readyState === 'open') go();
      else ch.onopen = go;
    }
  }
}
