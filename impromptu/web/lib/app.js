// The operator page: checks the browser and the link, then wires PeerSession → SurfaceView (a Reassembler and a
// CanvasDecoder per surface, the selected one on the screen canvas, the tabs of shared windows), InputCapture →
// the control channel (while this viewer may control) and FileTransfers → the Files panel, and keeps the top bar
// and the test hook up to date. Once a second it reads the connection's statistics (stats.js), sends them to the
// desktop as `stats` and shows them, with the desktop's `diagnosis`, in the Stats panel (docs/protocol.md §10).

import { FilesPanel } from './files-panel.js';
import { FileTransfers } from './files.js';
import { InputCapture } from './input.js';
import { linkKeys, parseLinkFragment } from './keys.js';
import { fillNotice } from './notice.js';
import { PeerSession } from './peer.js';
import { ControlGate } from './presence.js';
import { controlMessages, parseControl } from './protocol.js';
import { signalingUrl } from './signaling.js';
import { StatsPanel } from './stats-panel.js';
import {
  PipelineMeter,
  StatsHistory,
  pairRows,
  pipelineRows,
  selectedPair,
  statsMessage,
  verdictView,
} from './stats.js';
import { SurfaceView } from './surface-view.js';
import { SHORTCUT, surfaceOverlay, tabLabel } from './surfaces.js';

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
  tabs: $('tabs'),
  tablist: $('tablist'),
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
  fps: 0,
  latencyMs: null,
  decodeProblem: '', // a codec this browser cannot decode: shown over the connection state
  skippedFrames: 0, // sum of `stream.skipped` frames
};

// The page's own figures over each second (§10), told of every frame by the SurfaceView.
const meter = new PipelineMeter();
/** What the Stats panel shows: the last second's pair and pipeline, the desktop's last diagnosis, the last minute. */
const stats = { pair: null, pipeline: null, diagnosis: null, diagnosisAt: 0, history: new StatsHistory() };
/** A diagnosis older than this is no longer the desktop's word on the connection. */
const DIAGNOSIS_STALE_MS = 5000;

const view = new SurfaceView({
  meter,
  canvas,
  strip: ui.tabs,
  tablist: ui.tablist,
  requestKeyframe: (surface) => {
    meter.keyframeRequest();
    send(controlMessages.keyframeRequest(surface));
  },
  log: (key, ...args) => logOnce(key, ...args),
  onChange: () => {
    layoutNative();
    render();
  },
  onFrame: (surface, { timestamp, first }) => {
    frameCount += 1;
    page.latencyMs = Date.now() - timestamp / 1000; // meaningful when both clocks agree (same machine)
    if (first) render();
  },
  onSelect: () => input?.release(), // keys and buttons held on the window before let go there, not on the next
  onActivate: () => {
    if (role === 'control' && session !== null) canvas.focus({ preventScroll: true }); // keys to that window
  },
  onDecoderError,
});
const surfaces = view.surfaces;
let session = null;
let configsThisConnection = 0;
let role = 'control';
let input = null;
let canvasFocused = false;
let buttonTimer = 0;
// What the bar shows about viewers and control, and whether input may go out.
const gate = new ControlGate({ role: () => role, send: (message) => send(message), release: () => input?.release() });

// File transfers (§9), each on a `file` channel of its own; the Files panel shows them.
const files = new FileTransfers({
  openChannel: () => session?.openChannel('file', { ordered: true }) ?? null,
  send: (message) => send(message),
  save: saveBlob,
  onChange: (transfer, what) => filesPanel.update(transfer, what),
  log: (key, ...args) => logOnce(key, ...args),
});
const filesPanel = new FilesPanel(
  files,
  {
    button: $('files-btn'),
    badge: $('files-badge'),
    panel: $('files'),
    close: $('files-close'),
    upload: $('files-upload'),
    input: $('file-input'),
    replace: $('files-replace'),
    replaceLabel: $('files-replace-label'),
    note: $('files-note'),
    list: $('file-list'),
    transfers: $('transfers'),
    stage: $('stage'),
    hint: $('drop-hint'),
  },
  { onDismiss: () => focusDesktop() },
);

const statsPanel = new StatsPanel(
  { button: $('stats-btn'), panel: $('stats'), close: $('stats-close'), body: $('stats-body') },
  { onDismiss: () => focusDesktop(), onOpen: () => renderStats() },
);

// Read-only view for tests and benchmarks.
window.impromptu = Object.freeze({
  get state() {
    return shown().state;
  },
  get reason() {
    return shown().reason;
  },
  get framesDecoded() {
    return surfaces.selected?.framesDecoded ?? 0;
  },
  get lastConfig() {
    return selectedConfig();
  },
  /** Every surface: `{surface, title, width, height, state, framesDecoded, starts}`, by number. */
  get surfaces() {
    return view.describe();
  },
  get selectedSurface() {
    return surfaces.selected?.surface ?? null;
  },
  /** Show (and operate) surface `n`, as a click on its tab does; false when there is none. */
  selectSurface: (n) => view.select(n),
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
  /**
   * File transfers (§9): `list` (the desktop's last `file.list`, or null), `transfers` (a snapshot of each:
   * `{id, name, direction, state, detail, size, bytes, sent, received, error, savedAs, offsets, rate, eta}`),
   * `upload(fileOrFiles, {replace})` and `download(name)` (the new transfers' ids), `cancel(id)`, `refresh()`,
   * and the panel: `panelOpen`, `openPanel()`, `closePanel()`. The page's <input type=file> is #file-input.
   */
  files: Object.freeze({
    get list() {
      return files.list === null ? null : structuredClone(files.list);
    },
    get enabled() {
      return files.enabled;
    },
    get canUpload() {
      return files.canUpload;
    },
    get transfers() {
      return files.transfers.map((t) => t.snapshot());
    },
    upload: (chosen, options) => {
      const all = chosen instanceof Blob ? [chosen] : [...chosen];
      return all.map((file) => files.upload(file, options).id);
    },
    download: (name) => files.download(name).id,
    cancel: (id) => files.cancel(id),
    refresh: () => files.refresh(),
    get panelOpen() {
      return filesPanel.isOpen;
    },
    openPanel: () => filesPanel.open(),
    closePanel: () => filesPanel.close(),
  }),
  /**
   * Connection statistics (§10), as the Stats panel shows them: `pair` (the nominated candidate pair, §10's
   * fields, or null), `pipeline` (this page's figures over the last second), `verdict` (the desktop's, or null
   * while there is none), `verdictText`, `reasons`, `figures` (the desktop's, flattened) and `history` (the last
   * 60 s of each charted figure, oldest first).
   */
  get stats() {
    const d = currentDiagnosis();
    const v = verdictView(d, { viaRelay: session?.viaRelay ?? false });
    return structuredClone({
      pair: stats.pair,
      pipeline: stats.pipeline,
      verdict: v.verdict,
      verdictText: v.text,
      reasons: v.reasons,
      figures: d?.figures ?? {},
      history: stats.history.snapshot(),
    });
  },
  /** The Stats panel: `isOpen`, `openPanel()`, `closePanel()`. */
  statsPanel: Object.freeze({
    get isOpen() {
      return statsPanel.isOpen;
    },
    openPanel: () => statsPanel.open(),
    closePanel: () => statsPanel.close(),
  }),
  /** Test hook: each frame reaches the decoder `ms` late, one at a time, as on a machine too slow for the stream. */
  slowDecode: (ms) => view.slowDecode(ms),
  /** End the connection as if it had been lost (the page reconnects by itself); false when not connected. */
  dropConnection: (reason) => session !== null && session.drop(reason),
  canvas,
});

const logged = new Set();
function logOnce(key, ...args) {
  if (logged.has(key)) return;
  logged.add(key);
  console.warn('impromptu:', ...args);
}

// ---- UI ----

/** The selected surface's last `config`, or null. */
function selectedConfig() {
  return surfaces.selected?.config ?? null;
}

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
  const selected = surfaces.selected;
  const c = selectedConfig();
  ui.stream.textContent = c ? `${c.width}×${c.height} ${c.codec}` : '';
  ui.fps.textContent = c && page.state === 'connected' && selected.state === 'live' ? `${page.fps} fps` : '';
  // No picture yet and no connection: say why. A window that is paused or closed: say so over its last picture.
  const waiting = page.state !== 'connected' && !(selected && selected.framesDecoded > 0);
  const over = waiting ? null : surfaceOverlay(selected);
  ui.overlay.hidden = !waiting && over === null;
  ui.overlay.classList.toggle('dim', over !== null);
  if (waiting) ui.overlay.textContent = state === 'waiting' ? stateLine(state, reason) : STATE_TEXT[state];
  else ui.overlay.textContent = over?.text ?? '';
  renderFocus();
  const label = selected && selected.surface !== 0 ? `shared window: ${tabLabel(selected)}` : 'shared desktop';
  canvas.setAttribute('aria-label', label);
  if (view.several) canvas.setAttribute('aria-keyshortcuts', SHORTCUT.keys);
  else canvas.removeAttribute('aria-keyshortcuts');
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
  renderFocus();
}

/** "keyboard → desktop" while keys typed go to the desktop: the canvas has focus and its surface takes input. */
function renderFocus() {
  const s = surfaces.selected;
  ui.focus.hidden = !(canvasFocused && gate.canControl && (s === null || s.state === 'live'));
  ui.focus.title = view.several ? `Keys go to the window shown; ${SHORTCUT.text} shows another instead` : '';
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

/** The keyboard back to the desktop's picture, when keys typed there go somewhere. */
function focusDesktop() {
  if (role === 'control' && session !== null && !canvas.hidden) canvas.focus({ preventScroll: true });
  else if (!ui.fit.hidden) ui.fit.focus({ preventScroll: true });
}

/** Save a downloaded file as the browser saves a link's target: through an <a download>. */
function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000); // the download holds the Blob once it started
}

function setFit(fit) {
  document.body.classList.toggle('native', !fit);
  ui.fit.textContent = fit ? '1:1' : 'Fit';
  ui.fit.title = fit ? 'Show the desktop at its native pixel size' : 'Scale the desktop to fit the window';
  ui.fit.setAttribute('aria-pressed', String(!fit));
  layoutNative();
}

function layoutNative() {
  const c = selectedConfig();
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
  if (surfaces.selected) render();
}, 1000);

// ---- statistics (§10) ----

/** The desktop's last diagnosis, unless it is stale (or of a connection gone). */
function currentDiagnosis() {
  if (stats.diagnosis === null || performance.now() - stats.diagnosisAt > DIAGNOSIS_STALE_MS) return null;
  return stats.diagnosis;
}

let collecting = false;

/** Once a second: read the pair from getStats(), take the pipeline's figures, send them to the desktop, show them. */
async function collectStats() {
  if (collecting) return; // a getStats() that takes over a second: skip a beat rather than pile up
  collecting = true;
  try {
    const connected = session !== null && page.state === 'connected';
    let report = null;
    if (connected) {
      try {
        report = await session.getStats();
      } catch (err) {
        logOnce('stats:getStats', `could not read the connection's statistics: ${err?.message ?? err}`);
      }
    }
    stats.pair = report === null ? null : selectedPair(report);
    stats.pipeline = meter.take(view.queueSize());
    stats.history.push({ ...stats.pipeline, rtt_ms: stats.pair?.rtt_ms ?? null });
    if (connected) send(statsMessage({ pair: stats.pair, pipeline: stats.pipeline }));
    renderStats();
  } finally {
    collecting = false;
  }
}

function renderStats() {
  if (!statsPanel.isOpen) return;
  const d = currentDiagnosis();
  const figures = Object.entries(d?.figures ?? {}).map(([k, v]) => [k, v === null ? '—' : String(v)]);
  const groups = [
    { title: session?.viaRelay ? 'Network path (to the relay)' : 'Network path', rows: pairRows(stats.pair) },
    { title: 'This page', rows: pipelineRows(stats.pipeline) },
  ];
  if (figures.length > 0) groups.push({ title: 'The desktop’s view of it', rows: figures, collapsed: true });
  const verdict = verdictView(d, { viaRelay: session?.viaRelay ?? false });
  statsPanel.view.update({ verdict, history: stats.history.snapshot(), groups });
}

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
  else if (msg.type === 'surface.state') surfaces.setState(msg);
  else if (msg.type === 'file.list') files.setList(msg);
  else if (msg.type === 'diagnosis') {
    stats.diagnosis = msg;
    stats.diagnosisAt = performance.now();
  }
}

function applyConfig(config) {
  page.decodeProblem = '';
  // Behind a relay a `config` may announce a new upstream — possibly a restarted desktop whose frame numbers
  // start over — on the same connection: start afresh rather than refuse its frames as old.
  view.configure(config, { fresh: session.viaRelay });
}

function onVideo(buffer) {
  meter.videoBytes(buffer.byteLength);
  view.push(buffer);
}

function onDecoderError(surface, err, fatal) {
  if (fatal) {
    const codec = surfaces.get(surface)?.config?.codec ?? 'this stream';
    page.decodeProblem = `this browser cannot decode ${codec} (${err.message})`;
    logOnce('decoder:codec', page.decodeProblem);
    render();
  } else {
    logOnce(`decoder:${err?.name}`, `decoder error, waiting for a keyframe: ${err?.message ?? err}`);
  }
}

setInterval(() => view.tick(), 100);
setInterval(collectStats, 1000);

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
  filesPanel.attach();
  statsPanel.attach();
  view.attach();
  window.addEventListener('resize', layoutNative);
  window.addEventListener('hashchange', () => location.reload());
  window.addEventListener('pageshow', (e) => e.persisted && location.reload()); // back from the bfcache: stopped
  const onFocus = (focused) => {
    canvasFocused = focused;
    renderFocus();
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

  if (role === 'control') {
    input = new InputCapture(canvas, {
      send: (message) => gate.sendInput(message),
      reserved: (e) => view.reserves(e), // the shortcut that switches windows stays the page's
      surface: () => {
        const s = surfaces.selected;
        if (!s?.config || page.state !== 'connected' || s.state !== 'live') return null;
        return { surface: s.surface, width: s.config.width, height: s.config.height };
      },
    });
    input.attach();
  }

  session = new PeerSession({
    url: signalingUrl(location),
    keys,
    onState: setState,
    onOpen: () => {
      // A fresh connection: its own sequence numbers and a keyframe after its config.
      view.disconnect();
      meter.reset();
      stats.diagnosis = null;
      configsThisConnection = 0;
      applyPresence(null);
      files.connected(!session.viaRelay); // a relay carries no files
      if (role === 'control' && !filesPanel.isOpen) canvas.focus({ preventScroll: true });
    },
    onClose: () => {
      view.disconnect();
      stats.diagnosis = null;
      applyPresence(null); // who watches and who controls is news of a connection we no longer have
      files.disconnected();
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
