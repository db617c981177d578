// Decodes reassembled frames with WebCodecs and paints each one on a canvas as soon as it is out of the decoder.
// What to decode (keyframes after loss, when to ask for one) is the Reassembler's business, not this module's.
// For statistics (§10) it tells how long each frame took from `decode()` to the picture, and which frames it threw
// away; `slowMs` (a test hook) holds each frame that long before the decoder gets it, as a slow machine would.

/** Queue depth past which a delta frame is skipped: the decoder is behind, so catch up at the next keyframe. */
export const MAX_QUEUE = 8;
/** Frames held back at most while `slowMs` is set; the oldest go first. */
const MAX_HELD = 4 * MAX_QUEUE;
/** Frames tracked from `decode()` to the picture at most. */
const MAX_IN_FLIGHT = 64;

const defaultNow = () => (globalThis.performance ? globalThis.performance.now() : Date.now());

/**
 * One `VideoDecoder` drawing into `canvas`, recreated on every `configure()` and after an error.
 *
 * `onFrame({timestamp})` follows each painted frame (timestamp = capture time, µs since the epoch);
 * `onError(error, fatal)` reports a decoder failure (`fatal` when the browser cannot decode this codec at all);
 * `onDecoded(ms)` follows each painted frame with the time since it was given to `decode()` (null if unknown); `onDiscard(n)` tells
 * of `n` frames given to `decode()` that will never be painted (refused, or in the decoder when it was reset).
 */
export class CanvasDecoder {
  constructor(
    canvas,
    {
      onFrame = () => {},
      onError = () => {},
      onDecoded = () => {},
      onDiscard = () => {},
      now = defaultNow,
      VideoDecoderImpl,
      EncodedVideoChunkImpl,
    } = {},
  ) {
    this.canvas = canvas;
    this._ctx = canvas.getContext('2d', { alpha: false });
    this._onFrame = onFrame;
    this._onError = onError;
    this._onDecoded = onDecoded;
    this._onDiscard = onDiscard;
    this._now = now;
    this._inFlight = []; // {timestamp, at} of each chunk the current decoder has, in decode order
    this._held = []; // {chunk, timestamp, at} waiting for the decoder while slowMs > 0
    this._holdTimer = 0;
    this._slowMs = 0;
    this._VideoDecoder = VideoDecoderImpl ?? globalThis.VideoDecoder;
    this._EncodedVideoChunk = EncodedVideoChunkImpl ?? globalThis.EncodedVideoChunk;
    this._decoder = null;
    this._config = null;
    this._status = 'unconfigured'; // 'unconfigured' | 'ready' | 'broken' | 'unsupported' | 'closed'
    this.framesDecoded = 0;
  }

  /** Frames waiting: in the decoder (`decodeQueueSize`) and, while slowed, held back before it. */
  get queueSize() {
    return (this._decoder?.decodeQueueSize ?? 0) + this._held.length;
  }

  /** Test hook: hold each frame `ms` before handing it to the decoder, one at a time (0: no more). */
  get slowMs() {
    return this._slowMs;
  }

  set slowMs(ms) {
    this._slowMs = Math.max(0, Number(ms) || 0);
    if (this._slowMs === 0) {
      clearTimeout(this._holdTimer);
      this._holdTimer = 0;
      while (this._held.length > 0) this._feed(this._held.shift());
    }
  }

  /** 'unconfigured' | 'ready' | 'broken' (waits for a keyframe to start over) | 'unsupported' | 'closed'. */
  get status() {
    return this._status;
  }

  /** (Re)configure for a `config` message `{codec, width, height}`; the next frame decoded must be a keyframe. */
  configure(config) {
    if (this._status === 'closed') throw new Error('CanvasDecoder is closed');
    this._config = { codec: config.codec, width: config.width, height: config.height };
    if (this.canvas.width !== config.width) this.canvas.width = config.width;
    if (this.canvas.height !== config.height) this.canvas.height = config.height;
    this._start();
  }

  /**
   * Queue one frame `{keyframe, captureUs, data}`. Returns false when the frame could not be used and the stream
   * must restart from a keyframe (not configured yet, decoder broken or behind).
   */
  decode(frame) {
    const at = this._now();
    switch (this._status) {
      case 'unsupported':
      case 'closed':
        this._onDiscard(1);
        return true; // nothing to gain from asking for keyframes
      case 'unconfigured':
        this._onDiscard(1);
        return false;
      case 'broken':
        if (!frame.keyframe) {
          this._onDiscard(1);
          return false;
        }
        this._start();
        break;
    }
    if (!frame.keyframe && this.queueSize > MAX_QUEUE) {
      this._onDiscard(1);
      return false;
    }
    let chunk;
    try {
      chunk = new this._EncodedVideoChunk({
        type: frame.keyframe ? 'key' : 'delta',
        timestamp: frame.captureUs,
        data: frame.data,
      });
    } catch (err) {
      this._onDiscard(1);
      this._fail(this._decoder, err);
      return false;
    }
    const item = { chunk, timestamp: frame.captureUs, at };
    if (this._slowMs > 0) {
      this._held.push(item);
      if (this._held.length > MAX_HELD) {
        this._held.shift();
        this._onDiscard(1);
      }
      if (this._holdTimer === 0) this._holdTimer = setTimeout(() => this._release(), this._slowMs);
      return true;
    }
    return this._feed(item);
  }

  /** Hand one held frame to the decoder, and the next one `slowMs` later. */
  _release() {
    this._holdTimer = 0;
    const item = this._held.shift();
    if (item !== undefined) this._feed(item);
    if (this._held.length > 0) this._holdTimer = setTimeout(() => this._release(), Math.max(1, this._slowMs));
  }

  _feed(item) {
    const decoder = this._decoder;
    if (decoder === null) {
      this._onDiscard(1);
      return false;
    }
    try {
      decoder.decode(item.chunk);
    } catch (err) {
      this._onDiscard(1);
      this._fail(decoder, err);
      return false;
    }
    this._inFlight.push({ timestamp: item.timestamp, at: item.at });
    if (this._inFlight.length > MAX_IN_FLIGHT) {
      // A decoder that takes frames and gives nothing back: those it kept are not coming.
      this._inFlight.shift();
      this._onDiscard(1);
    }
    return true;
  }

  close() {
    if (this._status === 'closed') return;
    this._status = 'closed';
    this._closeDecoder();
  }

  _start() {
    this._closeDecoder();
    const decoder = new this._VideoDecoder({
      output: (videoFrame) => this._paint(decoder, videoFrame),
      error: (err) => this._fail(decoder, err),
    });
    this._decoder = decoder;
    this._status = 'ready';
    try {
      decoder.configure({
        codec: this._config.codec,
        codedWidth: this._config.width,
        codedHeight: this._config.height,
        optimizeForLatency: true,
      });
    } catch (err) {
      // A config WebCodecs rejects outright (a malformed codec string) throws here instead of calling `error`.
      this._fail(decoder, err);
    }
  }

  _paint(decoder, videoFrame) {
    try {
      if (decoder === this._decoder) {
        this._ctx.drawImage(videoFrame, 0, 0, this.canvas.width, this.canvas.height);
        this.framesDecoded += 1;
        this._decoded(videoFrame.timestamp);
        this._onFrame({ timestamp: videoFrame.timestamp });
      }
    } finally {
      videoFrame.close();
    }
  }

  _fail(decoder, err) {
    if (decoder !== this._decoder) return; // an old decoder's farewell
    const fatal = err?.name === 'NotSupportedError' || err?.name === 'TypeError';
    this._status = fatal ? 'unsupported' : 'broken';
    this._closeDecoder();
    this._onError(err, fatal);
  }

  /** The frame of `timestamp` came out: how long it took; frames given before it that never came out are gone. */
  _decoded(timestamp) {
    const i = this._inFlight.findIndex((f) => f.timestamp === timestamp);
    if (i < 0) {
      this._onDecoded(null); // a frame of ours all the same, though how long it took is unknown
      return;
    }
    const { at } = this._inFlight[i];
    this._inFlight.splice(0, i + 1);
    if (i > 0) this._onDiscard(i);
    this._onDecoded(this._now() - at);
  }

  _closeDecoder() {
    const gone = this._inFlight.length + this._held.length;
    this._inFlight = [];
    this._held = [];
    clearTimeout(this._holdTimer);
    this._holdTimer = 0;
    if (gone > 0) this._onDiscard(gone);
    const decoder = this._decoder;
    this._decoder = null;
    if (decoder !== null && decoder.state !== 'closed') {
      try {
        decoder.close();
      } catch {
        // closing twice is harmless
      }
    }
  }
}
