// node --test tests/js/ — signaling message validation and the websocket URL (docs/protocol.md §2).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { SignalingClient, parseServerMessage, signalingUrl } from '../../impromptu/web/lib/signaling.js';

test('signalingUrl follows the page scheme', () => {
  assert.equal(signalingUrl(new URL('http://127.0.0.1:8080/#c=x')), 'ws://127.0.0.1:8080/ws');
  assert.equal(signalingUrl(new URL('https://desk.example:8443/')), 'wss://desk.example:8443/ws');
});

test('parseServerMessage keeps known fields of valid messages', () => {
  const j = (o) => parseServerMessage(JSON.stringify(o));
  assert.deepEqual(j({ type: 'welcome', peer: 'p1', x: 1 }), { ok: true, msg: { type: 'welcome', peer: 'p1' } });
  assert.deepEqual(j({ type: 'waiting' }), { ok: true, msg: { type: 'waiting' } });
  assert.deepEqual(j({ type: 'desktop-gone' }), { ok: true, msg: { type: 'desktop-gone' } });
  assert.deepEqual(j({ type: 'offer', peer: 'p1', sdp: 'v=0\r\n', mac: 'm' }), {
    ok: true,
    msg: { type: 'offer', peer: 'p1', sdp: 'v=0\r\n', mac: 'm', relay: false },
  });
  assert.deepEqual(j({ type: 'offer', peer: 'p1', sdp: 'v=0\r\n', mac: 'm', relay: true }).msg.relay, true);
  assert.deepEqual(j({ type: 'offer', peer: 'p1', sdp: 'v=0\r\n', mac: 'm', relay: false }).msg.relay, false);
  assert.deepEqual(j({ type: 'waiting', reason: 'full' }), { ok: true, msg: { type: 'waiting', reason: 'full' } });
  assert.equal(j({ type: 'waiting', reason: 'x'.repeat(300) }).msg.reason.length, 200);
  assert.deepEqual(j({ type: 'reject', peer: 'p1', reason: 'full' }), {
    ok: true,
    msg: { type: 'reject', peer: 'p1', reason: 'full' },
  });
});

test('parseServerMessage drops malformed messages', () => {
  const bad = [
    'nope',
    'null',
    '[1]',
    '{"peer":"p1"}',
    '{"type":"welcome"}',
    '{"type":"welcome","peer":7}',
    '{"type":"offer","peer":"p1","sdp":"v=0"}',
    '{"type":"offer","peer":"p1","sdp":"","mac":"m"}',
    '{"type":"join","peer":"p1"}',
    '{"type":"offer","peer":"p1","sdp":"v=0","mac":"m","relay":"yes"}',
    '{"type":"offer","peer":"p1","sdp":"v=0","mac":"m","relay":1}',
    '{"type":"waiting","reason":7}',
    JSON.stringify({ type: 'offer', peer: 'p1', sdp: 'x'.repeat(70_000), mac: 'm' }),
  ];
  for (const text of bad) assert.equal(parseServerMessage(text).ok, false, text.slice(0, 60));
  assert.equal(parseServerMessage(new ArrayBuffer(3)).ok, false);
});

class FakeSocket {
  static last = null;
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.readyState = 0;
    FakeSocket.last = this;
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.readyState = 3;
  }
  serverOpen() {
    this.readyState = 1;
    this.onopen?.();
  }
  serverSend(obj) {
    this.onmessage?.({ data: typeof obj === 'string' ? obj : JSON.stringify(obj) });
  }
  serverClose(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code });
  }
}

test('SignalingClient: hello first, answer without peer, close reported once', () => {
  const got = [];
  const drops = [];
  const closes = [];
  const room = 'zxX3mSRP3_mO3qLpBQP6F6';
  const c = new SignalingClient('ws://h/ws', room, {
    WebSocketImpl: FakeSocket,
    onMessage: (m) => got.push(m),
    onDrop: (r) => drops.push(r),
    onClose: (r) => closes.push(r),
  });
  c.open();
  const ws = FakeSocket.last;
  assert.equal(ws.url, 'ws://h/ws');
  assert.equal(c.sendAnswer('sdp', 'mac'), false, 'not open yet');
  ws.serverOpen();
  assert.deepEqual(ws.sent, [{ type: 'hello', room, role: 'viewer' }]);
  ws.serverSend({ type: 'welcome', peer: 'p9' });
  ws.serverSend('garbage');
  assert.deepEqual(got, [{ type: 'welcome', peer: 'p9' }]);
  assert.equal(drops.length, 1);
  assert.equal(c.sendAnswer('v=0\r\n', 'M'), true);
  assert.deepEqual(ws.sent[1], { type: 'answer', sdp: 'v=0\r\n', mac: 'M' });
  ws.serverClose();
  ws.serverClose();
  assert.equal(closes.length, 1);
  assert.throws(() => new SignalingClient('ws://h/ws', 'short', {}), /room/);
});

test('SignalingClient: our own close() is not reported', () => {
  const closes = [];
  const c = new SignalingClient('ws://h/ws', 'zxX3mSRP3_mO3qLpBQP6F6', {
    WebSocketImpl: FakeSocket,
    onMessage: () => {},
    onClose: (r) => closes.push(r),
  });
  c.open();
  c.close();
  c.close();
  assert.deepEqual(closes, []);
});

test('parseServerMessage: join, answer and leave are for relays only', () => {
  const texts = {
    join: '{"type":"join","peer":"p2"}',
    leave: '{"type":"leave","peer":"p2"}',
    answer: '{"type":"answer","peer":"p2","sdp":"v=0\\r\\n","mac":"M","extra":1}',
  };
  for (const text of Object.values(texts)) {
    assert.equal(parseServerMessage(text).ok, false, `a viewer drops ${text}`);
    assert.equal(parseServerMessage(text, 'viewer').ok, false, `a viewer drops ${text}`);
  }
  assert.deepEqual(parseServerMessage(texts.join, 'relay'), { ok: true, msg: { type: 'join', peer: 'p2' } });
  assert.deepEqual(parseServerMessage(texts.leave, 'relay'), { ok: true, msg: { type: 'leave', peer: 'p2' } });
  assert.deepEqual(parseServerMessage(texts.answer, 'relay'), {
    ok: true,
    msg: { type: 'answer', peer: 'p2', sdp: 'v=0\r\n', mac: 'M' },
  });
  const bad = [
    ['{"type":"join"}', 'join.peer'],
    ['{"type":"leave","peer":""}', 'leave.peer'],
    ['{"type":"answer","sdp":"v=0","mac":"M"}', 'answer.peer'],
    ['{"type":"answer","peer":"p2","mac":"M"}', 'answer.sdp'],
    ['{"type":"answer","peer":"p2","sdp":"v=0","mac":""}', 'answer.mac'],
    [JSON.stringify({ type: 'answer', peer: 'p2', sdp: 'v=0', mac: 'M'.repeat(65) }), 'answer.mac'],
  ];
  for (const [text, reason] of bad) assert.deepEqual(parseServerMessage(text, 'relay'), { ok: false, reason }, text);
});

test('parseServerMessage: an unknown type has a fixed reason; the type, shortened, is detail', () => {
  assert.deepEqual(parseServerMessage('{"type":"join","peer":"p2"}'), {
    ok: false,
    reason: 'unknown type',
    detail: '"join"',
  });
  assert.deepEqual(parseServerMessage(JSON.stringify({ type: 'q'.repeat(500) }), 'relay'), {
    ok: false,
    reason: 'unknown type',
    detail: JSON.stringify('q'.repeat(40)),
  });
  const drops = [];
  const c = new SignalingClient('ws://h/ws', 'zxX3mSRP3_mO3qLpBQP6F6', {
    WebSocketImpl: FakeSocket,
    onMessage: () => {},
    onClose: () => {},
    onDrop: (reason, detail) => drops.push([reason, detail]),
  });
  c.open();
  FakeSocket.last.serverOpen();
  FakeSocket.last.serverSend({ type: 'what' });
  FakeSocket.last.serverSend({ type: 'welcome' });
  assert.deepEqual(drops, [['unknown type', '"what"'], ['welcome.peer', undefined]]);
  c.close();
});

test('SignalingClient: a relay says so in its hello, gets relay messages, and sends its own', () => {
  const got = [];
  const room = 'zxX3mSRP3_mO3qLpBQP6F6';
  const c = new SignalingClient('ws://h/ws', room, {
    role: 'relay',
    WebSocketImpl: FakeSocket,
    onMessage: (m) => got.push(m),
    onClose: () => {},
  });
  c.open();
  const ws = FakeSocket.last;
  assert.equal(c.send({ type: 'capacity', viewers: 4 }), false, 'not open yet');
  ws.serverOpen();
  assert.deepEqual(ws.sent, [{ type: 'hello', room, role: 'relay' }]);
  ws.serverSend({ type: 'join', peer: 'p2' });
  assert.deepEqual(got, [{ type: 'join', peer: 'p2' }]);
  assert.equal(c.send({ type: 'capacity', viewers: 4 }), true);
  assert.deepEqual(ws.sent[1], { type: 'capacity', viewers: 4 });
  c.close();
  assert.equal(c.send({ type: 'capacity', viewers: 0 }), false, 'closed');
  assert.throws(() => new SignalingClient('ws://h/ws', room, { role: 'desktop' }), /role/);
});
