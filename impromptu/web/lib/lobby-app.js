// The lobby page (docs/protocol.md §11): the desktops a standalone signaling server has online, as cards that
// open each desktop's operator page. The lobby token comes from the address (`#token=T`, then taken out of it) or
// a small form, and lives in sessionStorage so a reload keeps it. A lost socket is reopened with backoff; a
// refused token is not retried until the user gives another.

import {
  formatCount,
  formatSize,
  formatUptime,
  formatViewers,
  fragmentFromPastedLink,
  operatorUrl,
  parseLobbyMessage,
  reconnectDelay,
  thumbnailUrl,
  tokenFromFragment,
} from './lobby.js';
import { signalingUrl } from './signaling.js';

const TOKEN_KEY = 'impromptu.lobby.token';

const $ = (id) => document.getElementById(id);
const el = {
  body: document.body,
  count: $('count'),
  status: $('status'),
  alert: $('alert'),
  tokenForm: $('token-form'),
  tokenInput: $('token-input'),
  empty: $('empty'),
  startCmd: $('start-cmd'),
  list: $('desktops'),
};

let token = null;
let socket = null;
let failures = 0;
let retryTimer = null;
let listed = false; // a list came on this connection
let listAt = 0; // performance.now() when the last list came: uptimes tick from there
let ticker = null;
const cards = new Map(); // id -> {li, href, desktop, parts}
const thumbnails = new Map(); // id -> data: URL of its latest picture
const dropped = new Set(); // reasons already logged

/** An element with attributes and children; strings become text nodes, never markup. */
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

// sessionStorage throws where storage is disabled; the page then works for this load only.
function loadToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

function storeToken(value) {
  try {
    if (value === null) sessionStorage.removeItem(TOKEN_KEY);
    else sessionStorage.setItem(TOKEN_KEY, value);
  } catch {
    // see loadToken
  }
}

function setState(state, text) {
  el.body.dataset.state = state;
  setText(el.status, text);
}

// --- the connection --------------------------------------------------------------------------------------------

function connect() {
  clearTimeout(retryTimer);
  retryTimer = null;
  hangUp();
  listed = false;
  const ws = new WebSocket(signalingUrl(location));
  socket = ws;
  ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', role: 'lobby', token }));
  ws.onmessage = (ev) => {
    if (socket === ws) onMessage(ev.data);
  };
  ws.onerror = () => {}; // always followed by close
  ws.onclose = () => {
    if (socket === ws) lost();
  };
  if (failures === 0) setState('connecting', 'Connecting…');
}

/** Close our socket without reacting to its close. */
function hangUp() {
  if (socket === null) return;
  const ws = socket;
  socket = null;
  try {
    ws.close(1000);
  } catch {
    // already closing
  }
}

function lost() {
  socket = null;
  const delay = reconnectDelay(failures++);
  setState('reconnecting', 'Connection to the server lost — reconnecting…');
  retryTimer = setTimeout(connect, delay);
}

function onMessage(data) {
  const parsed = parseLobbyMessage(data);
  if (!parsed.ok) {
    if (!dropped.has(parsed.reason)) console.warn('lobby: dropped a message:', parsed.reason, parsed.detail ?? '');
    dropped.add(parsed.reason);
    return;
  }
  const msg = parsed.msg;
  switch (msg.type) {
    case 'refused':
      refused(msg.reason);
      break;
    case 'desktops':
      failures = 0;
      listed = true;
      setState('connected', 'Connected');
      render(msg.desktops);
      break;
    case 'thumbnail': {
      // Kept even before a list names this id (the server may send it first); the next list prunes it.
      thumbnails.set(msg.id, thumbnailUrl(msg));
      const card = cards.get(msg.id);
      if (card) showThumbnail(card);
      break;
    }
  }
}

function refused(reason) {
  hangUp();
  storeToken(null);
  token = null;
  listed = false;
  render([]);
  setText(el.alert, `The server refused this lobby: ${reason || 'no reason given'}.`);
  askToken();
}

// --- the token -------------------------------------------------------------------------------------------------

function askToken() {
  setState('idle', 'Not connected');
  el.tokenForm.hidden = false;
  el.tokenInput.focus();
}

function useToken(value) {
  token = value;
  storeToken(value);
  failures = 0;
  el.tokenForm.hidden = true;
  setText(el.alert, '');
  connect();
}

el.tokenForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const value = el.tokenInput.value.trim();
  if (value === '') return;
  el.tokenInput.value = '';
  useToken(value);
});

/** Take a `#token=` out of the address (so it is neither shown nor bookmarked) and return it, or null. */
function takeTokenFromAddress() {
  const fromHash = tokenFromFragment(location.hash);
  if (fromHash !== null) history.replaceState(null, '', location.pathname + location.search);
  return fromHash;
}

// --- the cards -------------------------------------------------------------------------------------------------

function render(desktops) {
  const ids = new Set(desktops.map((d) => d.id));
  for (const [id, card] of cards) {
    if (!ids.has(id)) {
      card.li.remove();
      cards.delete(id);
    }
  }
  for (const id of thumbnails.keys()) if (!ids.has(id)) thumbnails.delete(id);
  listAt = performance.now();
  // Restarted with each list so the seconds turn when the desktops' own do, not up to a second late.
  clearInterval(ticker);
  ticker = setInterval(tick, 1000);
  desktops.forEach((desktop, i) => {
    const href = desktop.links ? operatorUrl(location.origin, desktop.links) : null;
    let card = cards.get(desktop.id);
    if (card === undefined || card.href !== href) {
      const fresh = makeCard(desktop.id, href);
      card?.li.remove();
      cards.set(desktop.id, fresh);
      card = fresh;
    }
    card.desktop = desktop;
    updateCard(card);
    // Move only what is out of place, so a focused card or a half-typed link stays put.
    const at = el.list.children[i] ?? null;
    if (at !== card.li) el.list.insertBefore(card.li, at);
  });
  const count = formatCount(desktops.length);
  setText(el.count, listed ? count : '');
  document.title = listed && desktops.length ? `(${desktops.length}) impromptu — desktops` : 'impromptu — desktops';
  el.empty.hidden = !listed || desktops.length > 0;
}

function makeCard(id, href) {
  const parts = {
    frame: h('div', { class: 'frame' }, h('span', { class: 'placeholder' }, 'no picture yet')),
    name: h('h2', { class: 'name' }),
    size: h('span', { class: 'size' }),
    viewers: h('span', { class: 'viewers' }),
    uptime: h('span', { class: 'uptime' }),
    surfaces: h('span', { class: 'surfaces' }),
  };
  const info = h(
    'div',
    { class: 'info' },
    parts.name,
    h('p', { class: 'meta' }, parts.size, parts.viewers, parts.uptime, parts.surfaces),
  );
  const li = h('li', { class: 'desktop', 'data-id': id });
  if (href !== null) {
    const go = h('p', { class: 'go' }, 'Open the operator page ', h('span', { 'aria-hidden': 'true' }, '↗'));
    li.append(h('a', { class: 'open', href, target: '_blank', rel: 'noopener noreferrer' }, parts.frame, info, go));
  } else {
    li.append(parts.frame, info, pasteForm(id));
  }
  return { li, href, desktop: null, parts };
}

/** Without published links, the user pastes the desktop's link and we open its fragment on this server. */
function pasteForm(id) {
  const inputId = `paste-${id}`;
  const input = h('input', {
    id: inputId,
    type: 'text',
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: 'http://…/#c=…',
  });
  const error = h('p', { class: 'error', role: 'alert' });
  const form = h(
    'form',
    { class: 'paste' },
    h('p', { class: 'unpublished' }, 'Link not published'),
    h('label', { for: inputId }, 'Paste its link to open it'),
    h('div', { class: 'row' }, input, h('button', { type: 'submit' }, 'Open')),
    error,
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const fragment = fragmentFromPastedLink(input.value);
    if (fragment === null) {
      setText(error, 'That is not an impromptu link: it ends in #c=… or #v=… and a 43-character key.');
      input.focus();
      return;
    }
    setText(error, '');
    input.value = ''; // it holds a key: don't leave it on screen
    window.open(`/view#${fragment}`, '_blank', 'noopener');
  });
  return form;
}

function updateCard(card) {
  const d = card.desktop;
  setText(card.parts.name, d.name);
  setText(card.parts.size, formatSize(d.width, d.height));
  setText(card.parts.viewers, d.viewers === null ? 'starting…' : formatViewers(d.viewers));
  setText(card.parts.surfaces, d.surfaces > 1 ? `${d.surfaces} windows` : '');
  tickCard(card, performance.now());
  showThumbnail(card);
}

function tick() {
  const now = performance.now();
  for (const card of cards.values()) tickCard(card, now);
}

function tickCard(card, now) {
  const uptime = card.desktop.uptime;
  const text = uptime === null ? '' : `up ${formatUptime(uptime + (now - listAt) / 1000)}`;
  setText(card.parts.uptime, text);
}

function showThumbnail(card) {
  const url = thumbnails.get(card.desktop.id);
  if (url === undefined) return;
  let img = card.parts.frame.querySelector('img');
  if (img === null) {
    img = h('img', { decoding: 'async' });
    card.parts.frame.replaceChildren(img);
  }
  img.alt = card.desktop.name;
  if (img.getAttribute('src') !== url) img.src = url;
}

// --- start -----------------------------------------------------------------------------------------------------

function start() {
  el.startCmd.textContent = `impromptu vdisplay run --signal ${location.origin} --name NAME -- APP`;
  const fromAddress = takeTokenFromAddress();
  if (fromAddress !== null) storeToken(fromAddress);
  token = fromAddress ?? loadToken();
  if (token) connect();
  else askToken();
  // A `#token=` pasted into this tab's address bar changes only the fragment: no reload, so take it here.
  window.addEventListener('hashchange', () => {
    const fresh = takeTokenFromAddress();
    if (fresh !== null) useToken(fresh);
  });
}

start();
