// The operator page: checks the browser and the link, then wires PeerSession → Reassembler → CanvasDecoder,
// and InputCapture → the control channel (while this viewer may control), and keeps the top bar and the test hook
// up to date.

import { CanvasDecoder } from './decoder.js';
import { InputCapture } from './input.js';
import { linkKeys, parseLinkFragment } from './keys.js';
import { fillNotice } from './notice.js';
import { PeerSession } from './peer.js';
import { ControlGate } from './presence.js';
import { Reassembler, controlMessages, parseControl } from './protocol.js';
import { signalingUrl } from './signaling.js';

const $ = (id) => document.getElementById(id);
const canvas = $('screen');
const ui = {
  state: $('state'),
  stream: $('stream'),
  fps: $('fps'),
  focus: $('focus'),
  watching: $('watching'),
  control: $('control'),
  controlBtn: $('control-btn'),
  fit: $('fit'),
  notice: $('notice'),
  overlay: $('overlay'),
};

const STATE_TEXT = {
  connecting: 'Connecting…',
  waiting: 'Waiting for the desktop…',
  connected: 'Connected',
  reconnecting: 'Reconnecting…',
  failed: 'Failed',
  unsupported: 'Unsupported browser',
};

const page = {
  state: 'connecting',
  reason: '',
  lastConfig: null,
  fps: 0,
  latencyMs: null,
  decodeProblem: '', // a codec this browser cannot decode: shown over the connection state
  skippedFrames: 0, // sum of `stream.skipped` frames
};

let decoder = null;
let reassembler = null;
// Video that overtook the first `config` (they travel on different channels): kept until it arrives, so the
// first keyframe is not thrown away. Bounded: 256 fragments is at most 4 MiB.
const EARLY_MAX = 256;
let early = [];
let session = null;
let configsThisConnection = 0;
let role = 'control';
let input = null;
let canvasFocused = false;
let buttonTimer = 0;
// What the bar shows about viewers and control, and whether input may go out.
const gate = new ControlGate({ role: () => role, send: (message) => send(message), release: () => input?.release() });

// Read-only view for tests and benchmarks.
window.impromptu = Object.freeze({
  get state() {
    return shown().state;
  },
  get reason() {
    return shown().reason;
  },
  get framesDecoded() {
    return decoder ? decoder.framesDecoded : 0;
  },
  get lastConfig() {
    return page.lastConfig;
  },
  get fps() {
    return page.fps;
  },
  get latencyMs() {
    return page.latencyMs;
  },
  get presence() {
    return gate.presence;
  },
  get canControl() {
    return gate.canControl;
  },
  get skippedFrames() {
    return page.skippedFrames;
  },
  get viaRelay() {
    return session !== null && session.viaRelay;
  },
  canvas,
});

const logged = new Set();
function logOnce(key, ...args) {
  if (logged.has(key)) return;
  logged.add(key);
  console.warn('impromptu:', ...args);
}

// ---- UI ----

function setState(state, reason = '') {
  page.state = state;
  page.reason = reason;
  render();
}

/** The state to show: connected but unable to decode counts as failed. */
function shown() {
  if (page.decodeProblem !== '' && page.state === 'connected') return { state: 'failed', reason: page.decodeProblem };
  return { state: page.state, reason: page.reason };
}

/** The status line: a waiting page with a reason says why it waits instead of "for the desktop". */
function stateLine(state, reason) {
  if (state === 'connected' && session?.viaRelay) return 'Connected through a relay';
  if (!reason) return STATE_TEXT[state];
  return `${state === 'waiting' ? 'Waiting' : STATE_TEXT[state]} — ${reason}`;
}

function render() {
  const { state, reason } = shown();
  document.body.dataset.state = state;
  ui.state.textContent = stateLine(state, reason);
  ui.state.title = reason;
  const c = page.lastConfig;
  ui.stream.textContent = c ? `${c.width}×${c.height} ${c.codec}` : '';
  ui.fps.textContent = c && page.state === 'connected' ? `${page.fps} fps` : '';
  const showOverlay = page.state !== 'connected' && !(decoder && decoder.framesDecoded > 0);
  ui.overlay.hidden = !showOverlay;
  ui.overlay.textContent = showOverlay ? (state === 'waiting' ? stateLine(state, reason) : STATE_TEXT[state]) : '';
}

/** A full-page message that replaces the screen: the page cannot work at all. */
function showNotice(state, title, lines) {
  page.state = state;
  page.reason = title;
  document.body.dataset.state = state;
  ui.state.textContent = `${STATE_TEXT[state]}: ${title}`;
  ui.overlay.hidden = true;
  fillNotice(ui.notice, title, lines);
  ui.fit.hidden = true;
  canvas.hidden = true;
}

/**
 * The watching / control texts and the control button. The texts' spans stay in place (empty when there is
 * nothing to say) so that screen readers keep following them as live regions.
 */
function renderControl() {
  const bar = gate.view;
  ui.watching.textContent = bar.watching;
  ui.watching.title = bar.watchingTitle;
  ui.control.textContent = bar.control;
  ui.control.title = bar.controlTitle;
  const b = bar.button;
  ui.controlBtn.hidden = b === null;
  if (b !== null) {
    ui.controlBtn.textContent = b.label;
    ui.controlBtn.title = b.title;
    ui.controlBtn.dataset.action = b.action;
  }
  clearTimeout(buttonTimer);
  ui.controlBtn.disabled = false;
  ui.focus.hidden = !(canvasFocused && bar.canControl);
}

/** A new presence, or `null`: none on this connection (yet), which an older desktop never sends. */
function applyPresence(presence) {
  gate.update(presence);
  renderControl();
}

function onControlButton() {
  const action = ui.controlBtn.dataset.action;
  if (action !== 'request' && action !== 'release') return;
  send(action === 'request' ? controlMessages.controlRequest() : controlMessages.controlRelease());
  // Until the desktop answers with a new presence; should none come, the button works again after a while.
  ui.controlBtn.disabled = true;
  clearTimeout(buttonTimer);
  buttonTimer = setTimeout(() => (ui.controlBtn.disabled = false), 3000);
  canvas.focus({ preventScroll: true }); // keys back to the desktop (and not to this button)
}

function setFit(fit) {
  document.body.classList.toggle('native', !fit);
  ui.fit.textContent = fit ? '1:1' : 'Fit';
  ui.fit.title = fit ? 'Show the desktop at its native pixel size' : 'Scale the desktop to fit the window';
  ui.fit.setAttribute('aria-pressed', String(!fit));
  layoutNative();
}

function layoutNative() {
  const c = page.lastConfig;
  if (document.body.classList.contains('native') && c) {
    // One surface pixel on one device pixel.
    canvas.style.width = `${c.width / devicePixelRatio}px`;
    canvas.style.height = `${c.height / devicePixelRatio}px`;
  } else {
    canvas.style.width = canvas.style.height = '';
  }
}

// ---- frames per second ----

let frameCount = 0;
setInterval(() => {
  page.fps = frameCount;
  frameCount = 0;
  if (page.lastConfig) render();
}, 1000);

// ---- stream ----

function send(message) {
  return session !== null && session.send(message);
}

function onControl(text) {
  const parsed = parseControl(text);
  if (!parsed.ok) {
    const detail = parsed.detail ? ` ${parsed.detail}` : '';
    logOnce(`control:${parsed.reason}`, `dropped a control message: ${parsed.reason}${detail}`);
    return;
  }
  const msg = parsed.msg;
  if (msg.type === 'config') {
    // A config after the first may come from a relay's new upstream, which has not heard our role yet.
    if (configsThisConnection++ > 0) session.sayRole();
    applyConfig(msg);
  } else if (msg.type === 'presence') applyPresence(Object.freeze({ ...msg, requests: Object.freeze(msg.requests) }));
  else if (msg.type === 'stream.skipped') page.skippedFrames += msg.frames;
}

function applyConfig(config) {
  if (reassembler !== null && reassembler.surface !== config.surface) {
    // This page shows one surface: the first one configured on this connection.
    logOnce('config:surface', `ignoring surface ${config.surface} (and any other but ${reassembler.surface})`);
    return;
  }
  page.lastConfig = Object.freeze({ ...config });
  page.decodeProblem = '';
  // Behind a relay a `config` may announce a new upstream — possibly a restarted desktop whose frame numbers
  // start over — on the same connection: start afresh rather than refuse its frames as old.
  if (reassembler === null || session.viaRelay) {
    reassembler = new Reassembler({
      surface: config.surface,
      onKeyframeRequest: () => send(controlMessages.keyframeRequest(config.surface)),
      onDrop: (reason) => logOnce(`video:${reason}`, `dropped a video fragment: ${reason}`),
    });
  } else {
    reassembler.reset();
  }
  decoder.configure(config);
  layoutNative();
  render();
  const waiting = early;
  early = [];
  for (const buffer of waiting) onVideo(buffer);
}

function onVideo(buffer) {
  if (reassembler === null) {
    if (early.length < EARLY_MAX) early.push(buffer);
    else logOnce('video:early', 'dropped video that came long before its config');
    return;
  }
  const frame = reassembler.push(buffer);
  if (frame !== null && !decoder.decode(frame)) reassembler.needKeyframe();
}

function onDecoderError(err, fatal) {
  if (fatal) {
    const codec = page.lastConfig ? page.lastConfig.codec : 'this stream';
    page.decodeProblem = `this browser cannot decode ${codec} (${err.message})`;
    logOnce('decoder:codec', page.decodeProblem);
    render();
  } else {
    logOnce(`decoder:${err?.name}`, `decoder error, waiting for a keyframe: ${err?.message ?? err}`);
    reassembler?.needKeyframe();
  }
}

setInterval(() => reassembler?.tick(), 100);

// ---- start ----

function unsupportedReasons() {
  const lines = [];
  if (!window.isSecureContext) {
    lines.push(
      'This page is not a secure context, and browsers allow WebCodecs and WebCrypto only in one: ' +
        'open it over https, or on localhost / 127.0.0.1.',
    );
  }
  if (typeof window.VideoDecoder !== 'function' || !globalThis.crypto?.subtle) {
    lines.push(
      'impromptu needs WebCodecs (VideoDecoder): Chromium, Chrome or Edge 94 or later, Firefox 130 or later, ' +
        'or Safari 16.4 or later (H.264).',
    );
  }
  return lines;
}

async function main() {
  setFit(true);
  ui.fit.addEventListener('click', () => {
    setFit(document.body.classList.contains('native'));
    if (role === 'control' && session !== null) canvas.focus({ preventScroll: true }); // keys back to the desktop
  });
  ui.controlBtn.addEventListener('click', onControlButton);
  window.addEventListener('resize', layoutNative);
  window.addEventListener('hashchange', () => location.reload());
  window.addEventListener('pageshow', (e) => e.persisted && location.reload()); // back from the bfcache: stopped
  const onFocus = (focused) => {
    canvasFocused = focused;
    ui.focus.hidden = !(focused && gate.canControl);
  };
  canvas.addEventListener('focus', () => onFocus(true));
  canvas.addEventListener('blur', () => onFocus(false));

  const problems = unsupportedReasons();
  if (problems.length > 0) {
    showNotice('unsupported', 'This browser cannot show the desktop here', problems);
    return;
  }
  const link = parseLinkFragment(location.hash);
  if (!link.ok) {
    showNotice('failed', link.reason, [
      'Copy the whole link the desktop printed, including everything after the #, and open it again.',
    ]);
    return;
  }
  let keys;
  try {
    keys = await linkKeys(link);
  } catch (err) {
    showNotice('failed', err.message, ['Copy the whole link the desktop printed and open it again.']);
    return;
  }
  role = keys.role;
  applyPresence(null);

  decoder = new CanvasDecoder(canvas, {
    onFrame: ({ timestamp }) => {
      frameCount += 1;
      page.latencyMs = Date.now() - timestamp / 1000; // meaningful when both clocks agree (same machine)
      if (decoder.framesDecoded === 1) render();
    },
    onError: onDecoderError,
  });

  if (role === 'control') {
    input = new InputCapture(canvas, {
      send: (message) => gate.sendInput(message),
      surface: () => (page.lastConfig && page.state === 'connected' ? page.lastConfig : null),
    });
    input.attach();
  }

  session = new PeerSession({
    url: signalingUrl(location),
    keys,
    onState: setState,
    onOpen: () => {
      // A fresh connection: its own sequence numbers and a keyframe after its config.
      reassembler = null;
      configsThisConnection = 0;
      early = [];
      applyPresence(null);
      if (role === 'control') canvas.focus({ preventScroll: true });
    },
    onClose: () => {
      reassembler = null;
      early = [];
      applyPresence(null); // who watches and who controls is news of a connection we no longer have
    },
    onControl,
    onVideo,
    log: (key, ...args) => logOnce(key, ...args),
  });
  window.addEventListener('pagehide', () => session.stop());
  session.start();
  render();
}

main().catch((err) => {
  console.warn('impromptu: could not start', err);
  showNotice('failed', `The page could not start: ${err?.message ?? err}`, []);
});
