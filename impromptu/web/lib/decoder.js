// Decodes reassembled frames with WebCodecs and paints each one on a canvas as soon as it is out of the decoder.
// What to decode (keyframes after loss, when to ask for one) is the Reassembler's business, not this module's.

/** Queue depth past which a delta frame is skipped: the decoder is behind, so catch up at the next keyframe. */
export const MAX_QUEUE = 8;

/**
 * One `VideoDecoder` drawing into `canvas`, recreated on every `configure()` and after an error.
 *
 * `onFrame({timestamp})` follows each painted frame (timestamp = capture time, µs since the epoch);
 * `onError(error, fatal)` reports a decoder failure (`fatal` when the browser cannot decode this codec at all).
 */
export class CanvasDecoder {
  constructor(canvas, { onFrame = () => {}, onError = () => {}, VideoDecoderImpl, EncodedVideoChunkImpl } = {}) {
    this.canvas = canvas;
    this._ctx = canvas.getContext('2d', { alpha: false });
    this._onFrame = onFrame;
    this._onError = onError;
    this._VideoDecoder = VideoDecoderImpl ?? globalThis.VideoDecoder;
    this._EncodedVideoChunk = EncodedVideoChunkImpl ?? globalThis.EncodedVideoChunk;
    this._decoder = null;
    this._config = null;
    this._status = 'unconfigured'; // 'unconfigured' | 'ready' | 'broken' | 'unsupported' | 'closed'
    this.framesDecoded = 0;
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
    switch (this._status) {
      case 'unsupported':
      case 'closed':
        return true; // nothing to gain from asking for keyframes
      case 'unconfigured':
        return false;
      case 'broken':
        if (!frame.keyframe) return false;
        this._start();
        break;
    }
    const decoder = this._decoder;
    if (!frame.keyframe && decoder.decodeQueueSize > MAX_QUEUE) return false;
    try {
      decoder.decode(
        new this._EncodedVideoChunk({
          type: frame.keyframe ? 'key' : 'delta',
          timestamp: frame.captureUs,
          data: frame.data,
        }),
      );
    } catch (err) {
      this._fail(decoder, err);
      return false;
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

  _closeDecoder() {
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
