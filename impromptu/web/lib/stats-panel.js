// What the pages show of a connection's statistics (docs/protocol.md §10): the verdict and its reasons, charts of
// the last minute, and the figures in labelled groups (ConnectionStatsView); and the operator page's Stats panel,
// toggled by its button in the bar (StatsPanel). The figures themselves come from stats.js.

import { drawSparkline } from './chart.js';
import { hidePanel, showPanel } from './panel.js';
import { CHARTED, formatFigure } from './stats.js';

const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('aria-') || k.startsWith('data-') || k === 'role') node.setAttribute(k, v);
    else node[k] = v;
  }
  node.append(...children);
  return node;
};

const COLORS = { rtt_ms: '#e0a040', kbps: '#6aa0d8', fps_decoded: '#6c6', decode_ms: '#d77' };

/**
 * One connection's statistics, in `root` (built once, filled on each `update`): a title, the verdict (when the
 * connection has one), a chart per charted figure and the figures in groups.
 */
export class ConnectionStatsView {
  constructor(root, { title = '', verdict = true, charts = CHARTED } = {}) {
    this.root = root;
    root.classList.add('conn-stats');
    this._title = el('h3', {}, title);
    this._verdict = el('div', { class: 'verdict', role: 'status', 'aria-live': 'polite' });
    this._verdictWord = el('strong', { class: 'verdict-word' });
    this._verdictLabel = el('span', { class: 'verdict-label' }, 'Diagnosis: ');
    this._reasons = el('ul', { class: 'reasons' });
    this._verdict.append(this._verdictLabel, this._verdictWord, this._reasons);
    this._verdict.hidden = !verdict;
    this._charts = charts.map((c) => {
      const now = el('span', { class: 'now' });
      const canvas = el('canvas', { class: 'spark', 'aria-hidden': 'true', 'data-figure': c.key });
      const fig = el('figure', { class: 'chart' }, el('figcaption', {}, el('span', {}, c.label), now), canvas);
      return { ...c, fig, now, canvas };
    });
    this._chartBox = el('div', { class: 'charts' }, ...this._charts.map((c) => c.fig));
    this._groups = el('div', { class: 'groups' });
    root.replaceChildren(this._title, this._verdict, this._chartBox, this._groups);
    this._groupEls = new Map();
  }

  set title(text) {
    if (this._title.textContent !== text) this._title.textContent = text;
  }

  /**
   * `verdict`: `{verdict, text, reasons}` (stats.js verdictView) or undefined to leave it out; `history`: `{key:
   * values}` for the charts; `groups`: `[{title, rows: [[label, text]], collapsed}]` (`collapsed`: folded away
   * until opened).
   */
  update({ verdict, history = {}, groups = [] }) {
    if (verdict !== undefined) {
      this._verdict.hidden = false;
      this._verdict.dataset.verdict = verdict.verdict ?? 'waiting';
      this._verdictWord.textContent = verdict.text;
      const items = verdict.reasons.map((r) => el('li', {}, r));
      this._reasons.replaceChildren(...items);
      this._reasons.hidden = items.length === 0;
    }
    for (const c of this._charts) {
      const values = history[c.key] ?? [];
      const last = values.length > 0 ? values[values.length - 1] : null;
      c.now.textContent = formatFigure(last, c.unit);
      if (this.root.offsetParent !== null) drawSparkline(c.canvas, values, { color: COLORS[c.key], unit: c.unit, minMax: c.minMax });
    }
    this._fillGroups(groups);
  }

  _fillGroups(groups) {
    const seen = new Set();
    for (const g of groups) {
      seen.add(g.title);
      let box = this._groupEls.get(g.title);
      if (box === undefined) {
        const dl = el('dl');
        // A long group (the desktop's figures) folds away, closed until opened.
        const section = g.collapsed
          ? el('details', { class: 'group wide' }, el('summary', {}, g.title), dl)
          : el('section', { class: 'group' }, el('h4', {}, g.title), dl);
        box = { section, dl, rows: new Map() };
        this._groupEls.set(g.title, box);
        this._groups.append(box.section);
      }
      const labels = new Set(g.rows.map(([label]) => label));
      for (const [label, row] of box.rows) {
        if (!labels.has(label)) {
          row.dt.remove();
          row.dd.remove();
          box.rows.delete(label);
        }
      }
      for (const [label, text] of g.rows) {
        let row = box.rows.get(label);
        if (row === undefined) {
          row = { dt: el('dt', {}, label), dd: el('dd') };
          box.rows.set(label, row);
        }
        box.dl.append(row.dt, row.dd); // keeps the order given
        if (row.dd.textContent !== text) row.dd.textContent = text;
      }
    }
    for (const [title, box] of this._groupEls) {
      if (!seen.has(title)) {
        box.section.remove();
        this._groupEls.delete(title);
      }
    }
  }
}

/**
 * The operator page's Stats panel: `button` toggles it (aria-expanded), `close` hides it, Escape inside it (or on
 * the button) hides it and `onDismiss()` gives the keyboard back to the desktop. While hidden it takes no keys.
 */
export class StatsPanel {
  constructor({ button, panel, close, body }, { onDismiss = () => {}, onOpen = () => {} } = {}) {
    this.ui = { button, panel, close };
    this.view = new ConnectionStatsView(body, { title: 'This connection' });
    this._onDismiss = onDismiss;
    this._onOpen = onOpen;
  }

  get isOpen() {
    return !this.ui.panel.hidden;
  }

  attach() {
    const { button, close, panel } = this.ui;
    button.addEventListener('click', () => (this.isOpen ? this.close() : this.open()));
    close.addEventListener('click', () => this.close());
    const onEscape = (e) => {
      if (e.key !== 'Escape' || !this.isOpen) return;
      e.preventDefault();
      e.stopPropagation();
      this.close();
    };
    panel.addEventListener('keydown', onEscape);
    button.addEventListener('keydown', onEscape);
  }

  open({ focus = true } = {}) {
    showPanel(this.ui, { focus });
    this._onOpen();
  }

  close({ dismiss = true } = {}) {
    if (!this.isOpen) return;
    if (hidePanel(this.ui) || dismiss) this._onDismiss();
  }
}
