// The page's Files panel (docs/protocol.md §9): the desktop's files with a download button each, an Upload…
// button and drag and drop onto the desktop's picture (when this viewer may upload), and one row per transfer
// with its progress, rate, time left, a Cancel button and what went wrong. The transfers themselves are
// files.js's; this module only shows them and turns clicks and drops into calls.

import { formatBytes, formatEta, formatRate } from './files.js';
import { hidePanel, showPanel } from './panel.js';

const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('aria-') || k === 'role') node.setAttribute(k, v);
    else node[k] = v;
  }
  node.append(...children);
  return node;
};

const STATE_TEXT = { done: 'Done', cancelled: 'Cancelled', failed: 'Failed' };

/** The words for a transfer's state (the error itself is shown apart, as an alert). */
function statusText(t) {
  if (t.state === 'waiting') return t.detail === 'queued' ? 'Queued' : 'Waiting for the connection…';
  if (t.state === 'running') return t.bytes === 0 && t.size !== 0 ? 'Starting…' : '';
  if (t.state === 'done' && t.savedAs !== null && t.savedAs !== t.name) return `Saved as ${t.savedAs}`;
  return STATE_TEXT[t.state] ?? '';
}

function percent(t) {
  if (t.state === 'done') return 100;
  if (!t.size) return 0;
  return Math.min(100, Math.floor((t.bytes / t.size) * 100));
}

/**
 * Wires the panel's elements (`button`, `badge`, `panel`, `close`, `upload`, `input`, `replace`, `replaceLabel`,
 * `note`, `list`, `transfers`, and `stage` + `hint` for drops) to a FileTransfers. `onDismiss()` is called when
 * the panel closes by the keyboard or its buttons, for the page to give the keyboard back to the desktop.
 */
export class FilesPanel {
  constructor(files, elements, { onDismiss = () => {} } = {}) {
    this.files = files;
    this.ui = elements;
    this._onDismiss = onDismiss;
    this._rows = new Map(); // transfer id -> {li, ...parts}
    this._dragDepth = 0;
    this._ticker = 0;
    this._renderQueued = false;
  }

  get isOpen() {
    return !this.ui.panel.hidden;
  }

  attach() {
    const { button, close, upload, input, panel } = this.ui;
    button.addEventListener('click', () => (this.isOpen ? this.close() : this.open()));
    close.addEventListener('click', () => this.close());
    upload.addEventListener('click', () => input.click());
    input.addEventListener('change', () => {
      const chosen = [...input.files];
      input.value = ''; // choosing the same file again is a change again
      this.uploadAll(chosen);
    });
    // Escape closes the panel from inside it (or from its button); on the picture, Escape is the desktop's key.
    const onEscape = (e) => {
      if (e.key !== 'Escape' || !this.isOpen) return;
      e.preventDefault();
      e.stopPropagation();
      this.close();
    };
    panel.addEventListener('keydown', onEscape);
    button.addEventListener('keydown', onEscape);
    this._attachDrop();
    this.render();
  }

  /** Show the panel (and ask the desktop for a fresh list). `focus`: move the keyboard into it. */
  open({ focus = true } = {}) {
    if (!this.files.enabled) return;
    if (!this.isOpen) this.files.refresh();
    showPanel(this.ui, { focus });
    this.render();
  }

  /** Hide the panel; `dismiss` (the default) hands the keyboard back through `onDismiss`. */
  close({ dismiss = true } = {}) {
    if (!this.isOpen) return;
    if (hidePanel(this.ui) || dismiss) this._onDismiss();
  }

  uploadAll(list) {
    if (list.length === 0) return [];
    const replace = this.ui.replace.checked;
    const started = list.map((file) => this.files.upload(file, { replace }));
    this.open({ focus: false }); // show the progress; the keyboard stays where it was
    return started;
  }

  /** FileTransfers' onChange: a new list, or a transfer's state or progress. */
  update(transfer, what) {
    if (what === 'progress' && transfer !== null) {
      const row = this._rows.get(transfer.id);
      if (row !== undefined) this._fillRow(row, transfer);
      this._renderBadge();
      return;
    }
    // Several changes in one turn (a drop of many files) make one render.
    if (this._renderQueued) return;
    this._renderQueued = true;
    queueMicrotask(() => {
      this._renderQueued = false;
      this.render();
    });
  }

  render() {
    const { files, ui } = this;
    ui.button.hidden = !files.enabled;
    if (!files.enabled && this.isOpen) this.close({ dismiss: false });
    ui.upload.hidden = !files.canUpload;
    ui.replaceLabel.hidden = !files.canUpload;
    const list = files.list;
    ui.note.textContent = !files.enabled
      ? ''
      : files.canUpload
        ? `Uploads up to ${formatBytes(list.max_size)}; drop files on the desktop to upload them.`
        : 'This link may download files, not upload them.';
    this._renderList(list?.enabled ? list.files : []);
    this._renderTransfers();
    this._renderBadge();
    // Rates and times left change while nothing else does: refresh them while something runs.
    const running = files.transfers.some((t) => t.state === 'running');
    if (running && this._ticker === 0) this._ticker = setInterval(() => this._tick(), 500);
    else if (!running && this._ticker !== 0) {
      clearInterval(this._ticker);
      this._ticker = 0;
    }
  }

  _tick() {
    for (const t of this.files.transfers) {
      const row = this._rows.get(t.id);
      if (row !== undefined && t.state === 'running') this._fillRow(row, t);
    }
    this._renderBadge();
  }

  _renderList(entries) {
    const { list } = this.ui;
    const busy = new Set(
      this.files.transfers.filter((t) => t.direction === 'download' && !t.finished).map((t) => t.name),
    );
    const items = entries.map((f) => {
      const download = el('button', { type: 'button', class: 'download', 'aria-label': `Download ${f.name}` }, 'Download');
      download.disabled = busy.has(f.name);
      download.addEventListener('click', () => {
        download.disabled = true;
        this.files.download(f.name);
      });
      return el(
        'li',
        { class: 'file' },
        el('span', { class: 'name', title: f.name }, f.name),
        el('span', { class: 'size' }, formatBytes(f.size)),
        download,
      );
    });
    if (items.length === 0) items.push(el('li', { class: 'empty' }, 'No files in the desktop’s transfer folder.'));
    // Keep the focus on a download button across a new list, when that file is still there.
    const focused = list.contains(document.activeElement) ? document.activeElement.getAttribute('aria-label') : null;
    list.replaceChildren(...items);
    if (focused !== null) {
      const again = [...list.querySelectorAll('button')].find((b) => b.getAttribute('aria-label') === focused);
      (again ?? this.ui.panel).focus({ preventScroll: true });
    }
  }

  _renderTransfers() {
    const { transfers } = this.ui;
    const all = this.files.transfers;
    const ids = new Set(all.map((t) => t.id));
    for (const [id, row] of this._rows) {
      if (!ids.has(id)) {
        row.li.remove();
        this._rows.delete(id);
      }
    }
    // Newest first; rows are kept (not rebuilt) so that a focused Cancel button stays focused.
    let before = transfers.firstChild;
    for (const t of [...all].reverse()) {
      let row = this._rows.get(t.id);
      if (row === undefined) {
        row = this._makeRow(t);
        this._rows.set(t.id, row);
      }
      if (row.li !== before) transfers.insertBefore(row.li, before);
      before = row.li.nextSibling;
      this._fillRow(row, t);
    }
    transfers.hidden = all.length === 0;
  }

  _makeRow(t) {
    const up = t.direction === 'upload';
    const row = {
      li: el('li', { class: 'transfer' }),
      dir: el(
        'span',
        { class: 'dir', title: up ? 'upload' : 'download' },
        el('span', { 'aria-hidden': 'true' }, up ? '↑' : '↓'),
        el('span', { class: 'sr-only' }, up ? 'upload' : 'download'),
      ),
      name: el('span', { class: 'name', title: t.name }, t.name),
      bar: el('progress', { max: 1 }),
      pct: el('span', { class: 'pct' }),
      rate: el('span', { class: 'rate' }),
      eta: el('span', { class: 'eta' }),
      status: el('span', { class: 'status' }),
      action: el('button', { type: 'button', class: 'action' }),
      error: null,
    };
    row.bar.setAttribute('aria-label', `${up ? 'Upload' : 'Download'} of ${t.name}`);
    row.action.addEventListener('click', () => {
      if (row.action.dataset.action === 'cancel') this.files.cancel(t.id);
      else {
        const next = row.li.nextElementSibling ?? row.li.previousElementSibling;
        this.files.remove(t.id);
        // The button is gone: the keyboard goes to the next row's, or to the panel.
        (next?.querySelector('button') ?? this.ui.panel).focus({ preventScroll: true });
      }
    });
    row.li.dataset.id = t.id;
    row.li.append(row.dir, row.name, row.bar, row.pct, row.rate, row.eta, row.status, row.action);
    return row;
  }

  _fillRow(row, t) {
    row.li.dataset.state = t.state;
    const running = t.state === 'running';
    if (t.size === null) {
      // Indeterminate until the desktop says the size; empty if it never did.
      if (t.finished) row.bar.value = 0;
      else row.bar.removeAttribute('value');
    } else {
      row.bar.max = Math.max(1, t.size);
      row.bar.value = t.state === 'done' ? Math.max(1, t.size) : Math.min(t.bytes, t.size);
    }
    row.pct.textContent = t.size === null ? '' : `${percent(t)} %`;
    const rate = running ? t.rate : null;
    row.rate.textContent = formatRate(rate);
    const eta = running ? formatEta(t.eta) : '';
    row.eta.textContent = eta === '' ? '' : `${eta} left`;
    row.status.textContent = statusText(t);
    const cancel = !t.finished;
    row.action.dataset.action = cancel ? 'cancel' : 'remove';
    row.action.textContent = cancel ? 'Cancel' : '✕';
    row.action.setAttribute('aria-label', cancel ? `Cancel the ${t.direction} of ${t.name}` : `Remove ${t.name} from the list`);
    row.action.title = cancel ? '' : 'Remove from the list';
    if (t.state === 'failed' && row.error === null) {
      row.error = el('p', { class: 'error', role: 'alert' }, t.error);
      row.li.append(row.error);
    }
  }

  _renderBadge() {
    const active = this.files.transfers.filter((t) => !t.finished);
    const sized = active.filter((t) => t.size !== null);
    const size = sized.reduce((n, t) => n + t.size, 0);
    const done = sized.reduce((n, t) => n + Math.min(t.bytes, t.size), 0);
    this.ui.badge.textContent = active.length === 0 ? '' : size > 0 ? ` ${Math.floor((done / size) * 100)} %` : ' …';
    this.ui.button.title =
      active.length === 0 ? 'Files shared with the desktop' : `${active.length} transfer${active.length > 1 ? 's' : ''} going on`;
  }

  // ---- drag and drop onto the desktop's picture ----

  _attachDrop() {
    const { stage, hint } = this.ui;
    const hasFiles = (e) => e.dataTransfer !== null && [...e.dataTransfer.types].includes('Files');
    // A file dropped anywhere else must not make the browser leave the page to show it.
    for (const type of ['dragover', 'drop']) {
      window.addEventListener(type, (e) => {
        if (!hasFiles(e) || e.defaultPrevented) return;
        e.preventDefault();
        e.dataTransfer.dropEffect = 'none';
      });
    }
    const showHint = (show) => {
      hint.hidden = !show;
      if (!show) this._dragDepth = 0;
    };
    stage.addEventListener('dragenter', (e) => {
      if (!hasFiles(e)) return;
      this._dragDepth += 1;
      if (this.files.canUpload) showHint(true);
    });
    stage.addEventListener('dragover', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = this.files.canUpload ? 'copy' : 'none';
    });
    stage.addEventListener('dragleave', (e) => {
      if (!hasFiles(e)) return;
      this._dragDepth = Math.max(0, this._dragDepth - 1);
      if (this._dragDepth === 0) showHint(false);
    });
    stage.addEventListener('drop', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      showHint(false);
      if (this.files.canUpload) this.uploadAll([...e.dataTransfer.files]);
    });
  }
}
