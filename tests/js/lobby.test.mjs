// node --test tests/js/ — the lobby's messages, token, links and formatting (docs/protocol.md §11).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  MAX_DESKTOPS,
  MAX_THUMBNAIL_B64,
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
} from '../../impromptu/web/lib/lobby.js';

const KEY = 'A'.repeat(42) + 'w'; // 43 base64url characters: a 32-byte key
const KEY2 = 'b-_'.repeat(14) + 'Q';
const LINKS = { control: `c=${KEY}`, view: `v=${KEY2}` };

const desktop = (over = {}) => ({
  id: '0123456789abcdef',
  name: 'build box',
  width: 1280,
  height: 800,
  viewers: 2,
  uptime: 75,
  surfaces: 1,
  links: null,
  ...over,
});
const parse = (o) => parseLobbyMessage(JSON.stringify(o));
const list = (...desktops) => parse({ type: 'desktops', desktops });

test('refused keeps a shortened reason', () => {
  assert.deepEqual(parse({ type: 'refused', reason: 'wrong lobby token', x: 1 }), {
    ok: true,
    msg: { type: 'refused', reason: 'wrong lobby token' },
  });
  assert.equal(parse({ type: 'refused', reason: 'x'.repeat(500) }).msg.reason.length, 200);
  assert.deepEqual(parse({ type: 'refused', reason: 7 }).msg, { type: 'refused', reason: '' });
});

test('desktops keeps the known fields of each desktop', () => {
  const parsed = list(desktop({ extra: 'dropped' }), desktop({ id: 'b', links: LINKS }));
  assert.equal(parsed.ok, true);
  assert.deepEqual(parsed.msg.desktops[0], desktop());
  assert.deepEqual(parsed.msg.desktops[1].links, LINKS);
  assert.deepEqual(list().msg, { type: 'desktops', desktops: [] });
});

test('desktops takes nulls before the first status, and rounds the uptime down', () => {
  const fresh = { width: null, height: null, viewers: null, uptime: null, surfaces: null };
  assert.deepEqual(list(desktop(fresh)).msg.desktops[0], desktop(fresh));
  const { links, surfaces, ...missing } = desktop();
  assert.deepEqual(list(missing).msg.desktops[0], desktop({ surfaces: null, links: null }));
  assert.equal(list(desktop({ uptime: 12.9 })).msg.desktops[0].uptime, 12);
  // Whatever the server passes on from a desktop's `status` (0 to 2¹⁶) must not cost the whole list.
  const edge = { width: 0, height: 65536, viewers: 65536, surfaces: 0 };
  assert.deepEqual(list(desktop(edge)).msg.desktops[0], desktop(edge));
});

test('desktops with any bad desktop is dropped whole', () => {
  const bad = [
    [{ id: '' }, 'desktop.id'],
    [{ id: 7 }, 'desktop.id'],
    [{ id: 'a b' }, 'desktop.id'],
    [{ id: '<img>' }, 'desktop.id'],
    [{ id: 'x'.repeat(65) }, 'desktop.id'],
    [{ name: '' }, 'desktop.name'],
    [{ name: 'x'.repeat(65) }, 'desktop.name'],
    [{ name: 'tab\there' }, 'desktop.name'],
    [{ name: 'bell\u0085' }, 'desktop.name'],
    [{ name: null }, 'desktop.name'],
    [{ width: -1 }, 'desktop.width'],
    [{ width: 1.5 }, 'desktop.width'],
    [{ height: '800' }, 'desktop.height'],
    [{ height: 65537 }, 'desktop.height'],
    [{ viewers: -1 }, 'desktop.viewers'],
    [{ uptime: -3 }, 'desktop.uptime'],
    [{ uptime: '5' }, 'desktop.uptime'],
    [{ surfaces: 'one' }, 'desktop.surfaces'],
    [{ surfaces: true }, 'desktop.surfaces'],
    [{ viewers: 65537 }, 'desktop.viewers'],
    [{ links: 'c=x' }, 'desktop.links'],
    [{ links: {} }, 'desktop.links'],
    [{ links: { ...LINKS, control: `c=${KEY}A` } }, 'desktop.links'],
    [{ links: { ...LINKS, control: `v=${KEY}` } }, 'desktop.links'],
    [{ links: { ...LINKS, control: `c=${KEY.slice(1)}+` } }, 'desktop.links'],
    [{ links: { control: LINKS.control } }, 'desktop.links'],
    [{ links: { ...LINKS, view: `c=${KEY2}` } }, 'desktop.links'],
  ];
  for (const [over, reason] of bad) {
    const parsed = list(desktop({ id: 'good' }), desktop(over));
    assert.deepEqual(parsed, { ok: false, reason }, JSON.stringify(over));
  }
  // 64 characters are code points, as the server counts them: 64 emoji are 128 UTF-16 units.
  assert.equal(list(desktop({ name: '🖥'.repeat(64) })).ok, true);
  assert.equal(list(desktop({ name: '🖥'.repeat(65) })).ok, false);
  assert.deepEqual(list(desktop(), desktop()), { ok: false, reason: 'desktop.id twice' });
  assert.deepEqual(list(null), { ok: false, reason: 'desktop' });
  assert.deepEqual(list([desktop()]), { ok: false, reason: 'desktop' });
  assert.equal(parse({ type: 'desktops' }).ok, false);
  assert.equal(parse({ type: 'desktops', desktops: { a: desktop() } }).ok, false);
  const many = Array.from({ length: MAX_DESKTOPS + 1 }, (_, i) => desktop({ id: `d${i}` }));
  assert.equal(list(...many).ok, false);
  assert.equal(list(...many.slice(1)).ok, true);
});

test('thumbnail checks its id, type and base64', () => {
  const thumb = (over = {}) => parse({ type: 'thumbnail', id: 'abc', mime: 'image/jpeg', data: '/9j/4AAQ', ...over });
  assert.deepEqual(thumb({ x: 1 }), {
    ok: true,
    msg: { type: 'thumbnail', id: 'abc', mime: 'image/jpeg', data: '/9j/4AAQ' },
  });
  assert.equal(thumbnailUrl(thumb().msg), 'data:image/jpeg;base64,/9j/4AAQ');
  assert.equal(thumb({ mime: 'image/png', data: 'iVBORw==' }).ok, true);
  assert.equal(thumb({ data: 'A'.repeat(MAX_THUMBNAIL_B64) }).ok, true);
  const bad = [
    [{ id: '' }, 'thumbnail.id'],
    [{ id: 'a"b' }, 'thumbnail.id'],
    [{ id: null }, 'thumbnail.id'],
    [{ mime: 'image/svg+xml' }, 'thumbnail.mime'],
    [{ mime: 'text/html' }, 'thumbnail.mime'],
    [{ mime: undefined }, 'thumbnail.mime'],
    [{ data: '' }, 'thumbnail.data'],
    [{ data: 'abc' }, 'thumbnail.data'],
    [{ data: 'ab"c' }, 'thumbnail.data'],
    [{ data: 'ab)c' }, 'thumbnail.data'],
    [{ data: 'ab=c' }, 'thumbnail.data'],
    [{ data: 'ab-_' }, 'thumbnail.data'],
    [{ data: 12 }, 'thumbnail.data'],
    [{ data: 'A'.repeat(MAX_THUMBNAIL_B64 + 4) }, 'thumbnail.data'],
  ];
  for (const [over, reason] of bad) assert.deepEqual(thumb(over), { ok: false, reason }, JSON.stringify(over));
});

test('parseLobbyMessage drops what is not a lobby message', () => {
  for (const text of ['nope', 'null', '[1]', '{"reason":"x"}', '{"type":7}', '']) {
    assert.equal(parseLobbyMessage(text).ok, false, text);
  }
  assert.deepEqual(parseLobbyMessage('{"type":"welcome","peer":"p"}'), {
    ok: false,
    reason: 'unknown type',
    detail: '"welcome"',
  });
  assert.deepEqual(parseLobbyMessage(new ArrayBuffer(3)), { ok: false, reason: 'binary message' });
  assert.equal(parseLobbyMessage(JSON.stringify({ type: 'refused', reason: 'x'.repeat(300_000) })).ok, false);
});

test('tokenFromFragment reads #token=, decoded', () => {
  assert.equal(tokenFromFragment('#token=abc'), 'abc');
  assert.equal(tokenFromFragment('token=abc'), 'abc');
  assert.equal(tokenFromFragment('#token=a%2Bb%20c'), 'a+b c');
  assert.equal(tokenFromFragment('#token=a+b'), 'a+b');
  assert.equal(tokenFromFragment('#x=1&token=t2'), 't2');
  assert.equal(tokenFromFragment('#token=100%'), '100%');
  for (const hash of ['', '#', '#token=', '#tokens=abc', '#c=abc', null, undefined]) {
    assert.equal(tokenFromFragment(hash), null, String(hash));
  }
});

test('operatorUrl only for a well-formed control fragment', () => {
  assert.equal(operatorUrl('https://lobby.example', LINKS), `https://lobby.example/view#c=${KEY}`);
  for (const links of [null, undefined, {}, { control: `v=${KEY}` }, { control: `c=${KEY}&x` }, { control: 'c=' }]) {
    assert.equal(operatorUrl('http://h', links), null, JSON.stringify(links));
  }
  assert.equal(operatorUrl('http://h', { control: `c=${KEY}"><script>` }), null);
});

test('fragmentFromPastedLink finds the key of an impromptu link', () => {
  assert.equal(fragmentFromPastedLink(`http://127.0.0.1:8080/#c=${KEY}`), `c=${KEY}`);
  assert.equal(fragmentFromPastedLink(`  https://desk.example/view#v=${KEY2}\n`), `v=${KEY2}`);
  assert.equal(fragmentFromPastedLink(`https://h/view#v=${KEY2}&c=${KEY}`), `c=${KEY}`);
  const bad = [
    '',
    'hello',
    `c=${KEY}`,
    `#c=${KEY}`,
    `ftp://h/#c=${KEY}`,
    `javascript:alert(1)//#c=${KEY}`,
    'http://h/#c=short',
    `http://h/#c=${KEY}A`,
    `http://h/#c=${KEY.slice(1)}+`,
    `http://h/#k=${KEY}`,
    `http://h/?c=${KEY}`,
    `http://h/#c=${KEY}&c=bad`, // as keys.js reads it, the last one counts
    null,
  ];
  for (const text of bad) assert.equal(fragmentFromPastedLink(text), null, String(text));
});

test('formatUptime', () => {
  assert.equal(formatUptime(0), '0 s');
  assert.equal(formatUptime(42.7), '42 s');
  assert.equal(formatUptime(59), '59 s');
  assert.equal(formatUptime(60), '1 min');
  assert.equal(formatUptime(5 * 60 + 59), '5 min');
  assert.equal(formatUptime(3600), '1 h');
  assert.equal(formatUptime(3 * 3600 + 12 * 60 + 5), '3 h 12 min');
  assert.equal(formatUptime(86400 - 1), '23 h 59 min');
  assert.equal(formatUptime(86400), '1 d');
  assert.equal(formatUptime(2 * 86400 + 4 * 3600 + 59 * 60), '2 d 4 h');
  for (const v of [null, undefined, -1, NaN, Infinity, '5']) assert.equal(formatUptime(v), '', String(v));
});

test('formatViewers, formatSize, formatCount', () => {
  assert.equal(formatViewers(0), 'no viewers');
  assert.equal(formatViewers(1), '1 viewer');
  assert.equal(formatViewers(3), '3 viewers');
  assert.equal(formatViewers(null), '');
  assert.equal(formatViewers(-1), '');
  assert.equal(formatSize(1280, 800), '1280×800');
  assert.equal(formatSize(null, null), '');
  assert.equal(formatSize(0, 800), '');
  assert.equal(formatCount(0), 'no desktops');
  assert.equal(formatCount(1), '1 desktop');
  assert.equal(formatCount(12), '12 desktops');
});

test('reconnectDelay: 0.25 s doubling to at most 2 s, with bounded jitter', () => {
  const mid = () => 0.5;
  assert.deepEqual([0, 1, 2, 3, 4, 10].map((n) => reconnectDelay(n, undefined, mid)), [250, 500, 1000, 2000, 2000, 2000]);
  assert.equal(reconnectDelay(0, undefined, () => 0), 225);
  assert.equal(reconnectDelay(9, undefined, () => 1), 2200);
});
