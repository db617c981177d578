// node --test tests/js/ — PeerSession's handshake and reconnection, with a fake websocket and a fake
// RTCPeerConnection (the real ones are exercised by the end-to-end browser tests).
import './webcrypto.mjs';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { afterEach, beforeEach, test } from 'node:test';

import { answerMac, fromB64url, offerMac, openInput } from '../../impromptu/web/lib/keys.js';
import { BACKOFF, FULL_REASON, PeerSession, backoffDelay } from '../../impromptu/web/lib/peer.js';
import { FakeTimers } from './fake-timers.mjs';

const timers = new FakeTimers();

const V = JSON.parse(readFileSync(new URL('../vectors.json', import.meta.url), 'utf8'));
const KEYS = { role: 'control', kc: fromB64url(V.kc), kv: fromB64url(V.kv), room: V.room };
const OFFER_SDP = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n';

class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.readyState = 0;
    this.closed = false;
    FakeSocket.all.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.closed = true;
    this.readyState = 3;
  }
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  deliver(obj) {
    this.onmessage?.({ data: JSON.stringify(obj) });
  }
  drop() {
    this.readyState = 3;
    this.onclose?.({ code: 1006 });
  }
}

class FakeChannel {
  constructor(label) {
    this.label = label;
    this.readyState = 'connecting';
    this.sent = [];
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.readyState = 'closed';
  }
  open() {
    this.readyState = 'open';
    this.onopen?.();
  }
}

class FakePC extends EventTarget {
  static all = [];
  constructor(config) {
    super();
    this.config = config;
    this.iceGatheringState = 'new';
    this.connectionState = 'new';
    this.closed = false;
    FakePC.all.push(this);
  }
  async setRemoteDescription(desc) {
    this.remote = desc;
  }
  async createAnswer() {
    return { type: 'answer', sdp: 'v=0\r\na=answer\r\n' };
  }
  async setLocalDescription(desc) {
    this.iceGatheringState = 'gathering';
    this.localDescription = { type: desc.type, sdp: desc.sdp };
    queueMicrotask(() => {
      this.localDescription = { type: desc.type, sdp: `${desc.sdp}a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n` };
      this.iceGatheringState = 'complete';
      this.dispatchEvent(new Event('icegatheringstatechange'));
    });
  }
  close() {
    this.closed = true;
  }
  createDataChannel(label, options) {
    const ch = new FakeChannel(label);
    ch.options = options;
    return ch;
  }
  announce(label) {
    const ch = new FakeChannel(label);
    this.ondatachannel?.({ channel: ch });
    return ch;
  }
  setConnectionState(state) {
    this.connectionState = state;
    this.onconnectionstatechange?.();
  }
}

/**
 * Let promises and WebCrypto (which runs off the main thread) make progress until `cond()` holds. Bounded by the
 * wall clock (timers are faked, `Date` is not), not by a count of turns: on a loaded machine WebCrypto's first key
 * import alone can take longer than a few thousand turns of the loop.
 */
async function until(cond, what = 'condition', withinMs = 10_000) {
  const deadline = Date.now() + withinMs;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

function makeSession(extra = {}) {
  const states = [];
  const events = [];
  const session = new PeerSession({
    url: 'ws://127.0.0.1:1/ws',
    keys: KEYS,
    WebSocketImpl: FakeSocket,
    RTCPeerConnectionImpl: FakePC,
    onState: (s, r) => states.push([s, r]),
    onOpen: () => events.push('open'),
    onClose: () => events.push('close'),
    onVideo: (buf) => events.push(['video', buf.byteLength]),
    onControl: (text) => events.push(['control', text]),
    ...extra,
  });
  return { session, states, events, last: () => states.at(-1)?.[0] };
}

async function connect(session, peer = 'p1', { relay } = {}) {
  session.start();
  const ws = FakeSocket.all.at(-1);
  ws.open();
  ws.deliver({ type: 'welcome', peer });
  return offerAgain(ws, peer, { relay });
}

/** Another offer on the same socket (a new upstream), answered and opened. */
async function offerAgain(ws, peer, { relay } = {}) {
  const answers = ws.sent.filter((m) => m.type === 'answer').length;
  const offer = { type: 'offer', peer, sdp: OFFER_SDP, mac: await offerMac(KEYS.kv, peer, OFFER_SDP) };
  if (relay !== undefined) offer.relay = relay;
  ws.deliver(offer);
  await until(() => ws.sent.filter((m) => m.type === 'answer').length === answers + 1, 'the answer');
  const pc = FakePC.all.at(-1);
  const control = pc.announce('control');
  const video = pc.announce('video');
  control.open();
  video.open();
  return { ws, pc, control, video };
}

beforeEach(() => {
  FakeSocket.all = [];
  FakePC.all = [];
  timers.install();
});
afterEach(() => timers.uninstall());

test('backoff grows, caps at 10 s, with bounded jitter', () => {
  const mid = () => 0.5;
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, BACKOFF, mid)), [500, 1000, 2000, 4000, 8000, 10000, 10000]);
  assert.equal(backoffDelay(0, BACKOFF, () => 0), 400);
  assert.equal(backoffDelay(0, BACKOFF, () => 1), 600);
});

test('handshake: verified offer, answer MACed under Kc after gathering, channels → connected', async () => {
  const { session, states, events } = makeSession();
  assert.equal(session.state, 'connecting');
  const { ws, pc, control } = await connect(session);
  assert.deepEqual(ws.sent[0], { type: 'hello', room: V.room, role: 'viewer' });
  assert.deepEqual(pc.config, { iceServers: [] });
  assert.deepEqual(pc.remote, { type: 'offer', sdp: OFFER_SDP });
  const answer = ws.sent[1];
  assert.equal(answer.type, 'answer');
  assert.equal(answer.peer, undefined, 'the server adds the peer id');
  assert.match(answer.sdp, /a=candidate:/, 'answered after ICE gathering completed');
  assert.equal(answer.mac, await answerMac(KEYS.kc, 'p1', answer.sdp));
  assert.deepEqual(states, [['connected', '']]);
  assert.deepEqual(events, ['open']);
  assert.equal(session.send({ type: 'input.move', x: 1, y: 2 }), true);
  assert.deepEqual(control.sent, [{ type: 'input.move', x: 1, y: 2 }]);
  session.stop();
  assert.ok(ws.closed && pc.closed);
  assert.deepEqual(events, ['open', 'close']);
});

test('an offer with a bad MAC is never answered', async () => {
  const { session, last } = makeSession();
  session.start();
  const ws = FakeSocket.all[0];
  ws.open();
  ws.deliver({ type: 'welcome', peer: 'p1' });
  ws.deliver({ type: 'offer', peer: 'p1', sdp: OFFER_SDP, mac: await offerMac(KEYS.kv, 'p2', OFFER_SDP) });
  await until(() => last() === 'failed', 'failed state');
  assert.equal(FakePC.all.length, 0);
  assert.equal(ws.sent.length, 1);
  session.stop();
});

test('a bad-MAC offer while a connection works: logged, and the page still shows that connection', async () => {
  for (const relay of [false, true]) {
    FakePC.all = [];
    const logs = [];
    const { session, states, last } = makeSession({ log: (k) => logs.push(k) });
    const { ws, pc } = await connect(session, 'p1', { relay });
    const answers = ws.sent.length;
    const count = states.length;
    ws.deliver({ type: 'offer', peer: 'p1', sdp: OFFER_SDP, mac: await offerMac(KEYS.kv, 'p2', OFFER_SDP) });
    await until(() => logs.includes('signal:offer.mac'), 'the log line');
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    assert.equal(last(), 'connected', `relay: ${relay}`);
    assert.equal(states.length, count, 'no state change at all');
    assert.equal(ws.sent.length, answers, 'not answered');
    assert.ok(!pc.closed, 'the working connection stays');
    assert.equal(FakePC.all.length, 1);
    session.stop();
  }
});

test('an offer addressed to another peer id is dropped', async () => {
  const logs = [];
  const { session } = makeSession({ log: (k) => logs.push(k) });
  session.start();
  const ws = FakeSocket.all[0];
  ws.open();
  ws.deliver({ type: 'welcome', peer: 'p1' });
  ws.deliver({ type: 'offer', peer: 'p2', sdp: OFFER_SDP, mac: await offerMac(KEYS.kv, 'p2', OFFER_SDP) });
  await new Promise((r) => setImmediate(r));
  assert.equal(FakePC.all.length, 0);
  assert.deepEqual(logs, ['signal:offer.peer']);
  session.stop();
});

test('video and control messages are passed on', async () => {
  const { session, events } = makeSession();
  const { control, video } = await connect(session);
  video.onmessage({ data: new ArrayBuffer(30) });
  video.onmessage({ data: 'text on video' });
  control.onmessage({ data: '{"type":"config"}' });
  assert.deepEqual(events, ['open', ['video', 30], ['control', '{"type":"config"}']]);
  session.stop();
});

test('openChannel: a channel of the page’s own, on a direct connection only', async () => {
  for (const relay of [false, true]) {
    FakeSocket.all = [];
    const { session } = makeSession();
    assert.equal(session.openChannel('file', { ordered: true }), null, 'not connected yet');
    await connect(session, 'p1', { relay });
    const ch = session.openChannel('file', { ordered: true });
    if (relay) {
      assert.equal(ch, null, 'a relay carries no file channels');
    } else {
      assert.equal(ch.label, 'file');
      assert.deepEqual(ch.options, { ordered: true });
    }
    session.stop();
    assert.equal(session.openChannel('file', {}), null, 'stopped');
  }
});

test('drop(): the connection ends as if lost, and the page reconnects with a new socket', async () => {
  const { session, events, last } = makeSession();
  assert.equal(session.drop(), false, 'nothing to drop yet');
  const { ws, pc } = await connect(session);
  assert.equal(session.drop(), true);
  assert.ok(ws.closed && pc.closed);
  assert.deepEqual(events, ['open', 'close']);
  assert.equal(last(), 'reconnecting');
  assert.equal(session.drop(), false, 'already dropped');
  timers.tick(BACKOFF.initialMs * (1 + BACKOFF.jitter));
  assert.equal(FakeSocket.all.length, 2);
  session.stop();
});

test('waiting, then the desktop arrives', async () => {
  const { session, last } = makeSession();
  session.start();
  const ws = FakeSocket.all[0];
  ws.open();
  ws.deliver({ type: 'welcome', peer: 'p1' });
  ws.deliver({ type: 'waiting' });
  assert.equal(last(), 'waiting');
  timers.tick(60_000); // waiting is not a timeout
  assert.equal(FakeSocket.all.length, 1);
  ws.deliver({ type: 'offer', peer: 'p1', sdp: OFFER_SDP, mac: await offerMac(KEYS.kv, 'p1', OFFER_SDP) });
  await until(() => ws.sent.length === 2, 'the answer');
  FakePC.all[0].announce('control').open();
  assert.equal(last(), 'connected');
  session.stop();
});

test('desktop-gone with a connection open: it stays, the socket goes, a new one when the connection ends', async () => {
  const { session, events, last } = makeSession();
  const { ws, pc } = await connect(session);
  ws.deliver({ type: 'desktop-gone' }); // the desktop's own signaling socket dropped (§11)
  assert.equal(last(), 'connected');
  assert.ok(!pc.closed);
  assert.ok(ws.closed, 'an offer on it would only replace a working connection');
  assert.deepEqual(events, ['open']);
  timers.tick(60_000);
  assert.equal(FakeSocket.all.length, 1);
  pc.setConnectionState('closed');
  assert.equal(last(), 'reconnecting');
  timers.tick(1_000);
  assert.equal(FakeSocket.all.length, 2);
  session.stop();
});

test('desktop-gone before any connection: wait on the same socket', async () => {
  const { session, last } = makeSession();
  session.start();
  const ws = FakeSocket.all[0];
  ws.open();
  ws.deliver({ type: 'welcome', peer: 'p1' });
  ws.deliver({ type: 'desktop-gone' });
  assert.equal(last(), 'waiting');
  assert.ok(!ws.closed);
  timers.tick(60_000);
  assert.equal(FakeSocket.all.length, 1);
  session.stop();
});

test('a failed peer connection reconnects with a new socket after backoff', async () => {
  const { session, last, states } = makeSession();
  const { ws, pc } = await connect(session);
  pc.setConnectionState('failed');
  assert.equal(last(), 'reconnecting');
  assert.match(states.at(-1)[1], /peer connection failed; retrying in/);
  assert.ok(ws.closed && pc.closed);
  assert.equal(FakeSocket.all.length, 1);
  timers.tick(BACKOFF.initialMs * (1 + BACKOFF.jitter));
  assert.equal(FakeSocket.all.length, 2);
  assert.equal(last(), 'reconnecting');
  // The second attempt succeeds.
  const ws2 = FakeSocket.all[1];
  ws2.open();
  ws2.deliver({ type: 'welcome', peer: 'p7' });
  ws2.deliver({ type: 'offer', peer: 'p7', sdp: OFFER_SDP, mac: await offerMac(KEYS.kv, 'p7', OFFER_SDP) });
  await until(() => ws2.sent.length === 2, 'the second answer');
  FakePC.all.at(-1).announce('control').open();
  assert.equal(last(), 'connected');
  session.stop();
});

test('a lost signaling socket leaves an open connection up; a new socket comes only when that ends', async () => {
  const { session, events, last } = makeSession();
  const { ws, pc } = await connect(session);
  ws.drop(); // the signaling server restarted (§11)
  assert.equal(last(), 'connected');
  assert.ok(!pc.closed);
  timers.tick(60_000);
  assert.equal(FakeSocket.all.length, 1, 'no new socket while the connection is up');
  assert.deepEqual(events, ['open']);
  pc.setConnectionState('failed');
  assert.equal(last(), 'reconnecting');
  timers.tick(1_000);
  assert.equal(FakeSocket.all.length, 2);
  session.stop();
});

test('behind a relay with signaling lost: when the connection ends, a new socket at once', async () => {
  const { session, last } = makeSession();
  const { ws, pc } = await connect(session, 'p1', { relay: true });
  ws.drop();
  assert.equal(last(), 'connected');
  pc.setConnectionState('failed');
  assert.equal(last(), 'reconnecting');
  timers.tick(1_000); // not the 5 s a relay's viewer waits for an offer on a live socket
  assert.equal(FakeSocket.all.length, 2);
  session.stop();
});

test('a lost signaling socket before the connection opened: a new attempt', async () => {
  const { session, last } = makeSession();
  session.start();
  FakeSocket.all[0].open();
  FakeSocket.all[0].drop();
  assert.equal(last(), 'reconnecting');
  timers.tick(1_000);
  assert.equal(FakeSocket.all.length, 2);
  session.stop();
});

test('a closed control channel and a long disconnect reconnect', async () => {
  for (const breakIt of [
    ({ control }) => control.onclose(),
    ({ pc }) => {
      pc.setConnectionState('disconnected');
      timers.tick(4_999);
      assert.equal(FakeSocket.all.length, 1, 'a short disconnect is tolerated');
      timers.tick(1);
    },
  ]) {
    FakeSocket.all = [];
    const { session, last } = makeSession();
    const parts = await connect(session);
    breakIt(parts);
    assert.equal(last(), 'reconnecting');
    timers.tick(1_000);
    assert.equal(FakeSocket.all.length, 2);
    session.stop();
  }
});

test('no offer in time: retry; repeated failures back off', async () => {
  const { session, last } = makeSession();
  session.start();
  FakeSocket.all[0].open();
  timers.tick(15_000);
  assert.equal(last(), 'reconnecting');
  timers.tick(600);
  assert.equal(FakeSocket.all.length, 2);
  FakeSocket.all[1].drop();
  timers.tick(799);
  assert.equal(FakeSocket.all.length, 2, 'the second delay is longer');
  timers.tick(401);
  assert.equal(FakeSocket.all.length, 3);
  session.stop();
  timers.tick(60_000);
  assert.equal(FakeSocket.all.length, 3, 'stopped means stopped');
});

test('reject: failed with the reason, and a later retry', async () => {
  const { session, last, states } = makeSession();
  session.start();
  const ws = FakeSocket.all[0];
  ws.open();
  ws.deliver({ type: 'welcome', peer: 'p1' });
  ws.deliver({ type: 'reject', peer: 'p1', reason: 'the desktop is full' });
  assert.equal(last(), 'failed');
  assert.match(states.at(-1)[1], /the desktop is full/);
  timers.tick(1_000);
  assert.equal(FakeSocket.all.length, 2);
  session.stop();
});

// ---- through a relay (docs/protocol.md §7) ----

const VIEW_KEYS = { role: 'view', kc: null, kv: KEYS.kv, room: V.room };

/** Check that `sent` holds `relayed` envelopes from `from`, numbered `firstSeq`…, carrying `messages` in order. */
async function assertEnvelopes(sent, from, firstSeq, messages) {
  assert.equal(sent.length, messages.length);
  for (const [i, envelope] of sent.entries()) {
    assert.deepEqual(Object.keys(envelope), ['type', 'from', 'seq', 'iv', 'box']);
    assert.equal(envelope.type, 'relayed');
    assert.equal(envelope.from, from);
    assert.equal(envelope.seq, firstSeq + i);
    assert.match(envelope.iv, /^[A-Za-z0-9_-]{16}$/);
    const text = await openInput(KEYS.kc, from, envelope.seq, envelope.iv, envelope.box);
    assert.notEqual(text, null, `#${envelope.seq} opens under Kc, for its sender and number`);
    assert.deepEqual(JSON.parse(text), messages[i]);
    assert.doesNotMatch(envelope.box, /input|control/, 'nothing of the message shows');
  }
}

test('an offer from a relay: the answer is MACed under Kv even with a control link', async () => {
  const { session } = makeSession();
  assert.equal(session.viaRelay, false);
  assert.equal(session.peerId, null);
  assert.equal(session.connectionState, null, 'no peer connection yet');
  const { ws } = await connect(session, 'p1', { relay: true });
  assert.equal(session.connectionState, 'new', 'the fake’s state');
  const answer = ws.sent[1];
  assert.equal(answer.mac, await answerMac(KEYS.kv, 'p1', answer.sdp));
  assert.notEqual(answer.mac, await answerMac(KEYS.kc, 'p1', answer.sdp));
  assert.equal(session.viaRelay, true);
  assert.equal(session.peerId, 'p1');
  assert.equal(session.channelsOpen, true);
  // The desktop's own offer (relay:false) is answered under Kc again, and the connection is direct.
  await offerAgain(ws, 'p1', { relay: false });
  assert.equal(ws.sent.at(-1).mac, await answerMac(KEYS.kc, 'p1', ws.sent.at(-1).sdp));
  assert.equal(session.viaRelay, false);
  session.stop();
  assert.equal(session.viaRelay, false);
  assert.equal(session.connectionState, null);
});

test('behind a relay: control.hello first, then envelopes numbered in send order; keyframe.request bare', async () => {
  const { session } = makeSession();
  const { control } = await connect(session, 'p1', { relay: true });
  const M = [
    { type: 'input.move', x: 1, y: 2 },
    { type: 'input.key', code: 'KeyA', key: 'a', down: true },
    { type: 'control.request' },
    { type: 'input.release' },
  ];
  assert.equal(session.send(M[0]), true);
  assert.equal(session.send(M[1]), true);
  assert.equal(session.send({ type: 'keyframe.request', surface: 0 }), true);
  assert.equal(session.send(M[2]), true);
  assert.equal(session.send(M[3]), true);
  await until(() => control.sent.length === 6, 'six messages');
  // The keyframe request needs no role: it goes at once, bare; the relay answers it itself.
  assert.deepEqual(control.sent[0], { type: 'keyframe.request', surface: 0 });
  await assertEnvelopes(control.sent.slice(1), 'p1', 1, [{ type: 'control.hello' }, ...M]);
  session.stop();
});

test('envelopes leave in order even when they are sealed out of order', async () => {
  const { session } = makeSession();
  const { control } = await connect(session, 'p1', { relay: true });
  await until(() => control.sent.length === 1, 'control.hello');
  const subtle = globalThis.crypto.subtle;
  const encrypt = subtle.encrypt;
  let calls = 0;
  // The first sealing from now on takes much longer than the ones after it.
  subtle.encrypt = async function (...args) {
    const slow = calls++ === 0;
    const box = await encrypt.apply(this, args);
    if (slow) for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    return box;
  };
  try {
    const moves = [1, 2, 3].map((x) => ({ type: 'input.move', x, y: 0 }));
    for (const m of moves) session.send(m);
    await until(() => control.sent.length === 4, 'three more envelopes');
    assert.equal(calls, 3);
    await assertEnvelopes(control.sent, 'p1', 1, [{ type: 'control.hello' }, ...moves]);
  } finally {
    delete subtle.encrypt;
    session.stop();
  }
  assert.equal(globalThis.crypto.subtle.encrypt, encrypt);
});

test('a message of over 4096 UTF-8 bytes is not sealed: dropped, logged once, no number spent', async () => {
  const logs = [];
  const { session } = makeSession({ log: (key) => logs.push(key) });
  const { control } = await connect(session, 'p1', { relay: true });
  const long = (n) => ({ type: 'input.key', code: 'KeyE', key: '€'.repeat(n), down: true });
  const overhead = JSON.stringify(long(0)).length;
  // '€' is 3 UTF-8 bytes but one character: the limit counts bytes.
  assert.equal(session.send(long(1366)), false, `${overhead + 3 * 1366} bytes`);
  assert.equal(session.send(long(1400)), false);
  const fits = long(Math.floor((4096 - overhead) / 3));
  assert.equal(session.send(fits), true);
  await until(() => control.sent.length === 2, 'hello and the one that fits');
  await assertEnvelopes(control.sent, 'p1', 1, [{ type: 'control.hello' }, fits]);
  assert.deepEqual(logs, ['relayed:too-long', 'relayed:too-long'], 'the page logs once per key');
  session.stop();
});

test('a direct connection sends bare; a view-only link behind a relay sends no envelopes', async () => {
  const direct = makeSession();
  const { control } = await connect(direct.session, 'p1');
  direct.session.send({ type: 'input.move', x: 1, y: 2 });
  assert.deepEqual(control.sent, [{ type: 'input.move', x: 1, y: 2 }], 'no control.hello, no envelope');
  direct.session.stop();

  const logs = [];
  const view = makeSession({ keys: VIEW_KEYS, log: (key) => logs.push(key) });
  const relayed = await connect(view.session, 'p2', { relay: true });
  assert.equal(view.session.send({ type: 'input.move', x: 1, y: 2 }), false);
  assert.equal(view.session.send({ type: 'control.request' }), false);
  assert.equal(view.session.send({ type: 'keyframe.request', surface: 0 }), true);
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  assert.deepEqual(relayed.control.sent, [{ type: 'keyframe.request', surface: 0 }], 'not even control.hello');
  assert.deepEqual(logs, ['relayed:input.move', 'relayed:control.request']);
  assert.equal(relayed.ws.sent[1].mac, await answerMac(KEYS.kv, 'p2', relayed.ws.sent[1].sdp));
  view.session.stop();
});

test('envelope numbers grow per peer id: across upstreams on one socket, afresh on a new socket', async () => {
  const { session } = makeSession();
  const first = await connect(session, 'p1', { relay: true });
  session.send({ type: 'input.move', x: 1, y: 1 });
  await until(() => first.control.sent.length === 2, 'hello and move');
  // The relay went away and the server moved us to another one: same socket, same peer id.
  const second = await offerAgain(first.ws, 'p1', { relay: true });
  session.send({ type: 'input.move', x: 2, y: 2 });
  await until(() => second.control.sent.length === 2, 'hello and move on the new connection');
  await assertEnvelopes(second.control.sent, 'p1', 3, [{ type: 'control.hello' }, { type: 'input.move', x: 2, y: 2 }]);
  assert.equal(first.control.sent.length, 2, 'nothing more on the old connection');
  // A new socket is a new peer id, numbered from 1.
  second.pc.setConnectionState('failed');
  timers.tick(1_000);
  const ws = FakeSocket.all.at(-1);
  ws.open();
  ws.deliver({ type: 'welcome', peer: 'p9' });
  const third = await offerAgain(ws, 'p9', { relay: true });
  await until(() => third.control.sent.length === 1, 'hello');
  await assertEnvelopes(third.control.sent, 'p9', 1, [{ type: 'control.hello' }]);
  session.stop();
});

test('waiting because every place is taken says so', async () => {
  const { session, states } = makeSession();
  session.start();
  const ws = FakeSocket.all[0];
  ws.open();
  ws.deliver({ type: 'welcome', peer: 'p1' });
  ws.deliver({ type: 'waiting', reason: 'full' });
  assert.deepEqual(states.at(-1), ['waiting', FULL_REASON]);
  assert.match(FULL_REASON, /every place is taken/);
  ws.deliver({ type: 'waiting', reason: 'something else' });
  assert.deepEqual(states.at(-1), ['waiting', '']);
  session.stop();
});

test('a relay: hello role relay, its viewers’ signaling passed on, signal() sends, socket end reported', async () => {
  const signals = [];
  let ends = 0;
  const { session } = makeSession({
    role: 'relay',
    onSignal: (m) => signals.push(m),
    onSignalingEnd: () => (ends += 1),
  });
  assert.equal(session.signal({ type: 'capacity', viewers: 4 }), false, 'no socket yet');
  const { ws, pc } = await connect(session, 'r1');
  assert.deepEqual(ws.sent[0], { type: 'hello', room: V.room, role: 'relay' });
  ws.deliver({ type: 'join', peer: 'v1' });
  ws.deliver({ type: 'answer', peer: 'v1', sdp: 'v=0\r\n', mac: 'M' });
  ws.deliver({ type: 'leave', peer: 'v1' });
  assert.deepEqual(signals, [
    { type: 'join', peer: 'v1' },
    { type: 'answer', peer: 'v1', sdp: 'v=0\r\n', mac: 'M' },
    { type: 'leave', peer: 'v1' },
  ]);
  assert.equal(session.signal({ type: 'capacity', viewers: 4 }), true);
  assert.deepEqual(ws.sent.at(-1), { type: 'capacity', viewers: 4 });
  assert.equal(ends, 0);
  pc.setConnectionState('failed');
  assert.equal(ends, 1, 'the socket of the failed attempt is gone');
  session.stop();
  assert.equal(ends, 1);
});

test('a viewer page drops relay-only signaling', async () => {
  const signals = [];
  const logs = [];
  const { session } = makeSession({ onSignal: (m) => signals.push(m), log: (k) => logs.push(k) });
  const { ws } = await connect(session, 'p1');
  ws.deliver({ type: 'join', peer: 'v1' });
  ws.deliver({ type: 'x'.repeat(100) });
  ws.deliver({ type: 'something else' });
  assert.deepEqual(signals, []);
  assert.deepEqual(new Set(logs), new Set(['signal:unknown type']), 'one fixed key, whatever type the server chose');
  session.stop();
});

test('a relay that goes away: wait on the same socket for the server to place us again', async () => {
  const { session, states, events, last } = makeSession();
  const { ws, pc, control } = await connect(session, 'p1', { relay: true });
  control.onclose();
  assert.equal(last(), 'reconnecting');
  assert.match(states.at(-1)[1], /^the relay closed the connection; waiting to be placed again$/);
  assert.ok(pc.closed, 'the old connection is closed');
  assert.ok(!ws.closed, 'the socket stays: it keeps our peer id');
  assert.deepEqual(events, ['open', 'close']);
  timers.tick(4_999);
  assert.equal(FakeSocket.all.length, 1);
  // The server placed us with another upstream (here the desktop itself): its offer comes on the same socket.
  await offerAgain(ws, 'p1', { relay: false });
  assert.equal(last(), 'connected');
  assert.equal(session.viaRelay, false);
  timers.tick(60_000);
  assert.equal(FakeSocket.all.length, 1, 'no reconnection once the new connection is up');
  // A direct connection that ends starts over with a new socket, as before.
  FakePC.all.at(-1).setConnectionState('failed');
  assert.ok(ws.closed);
  session.stop();
});

test('a relay link that fails while the relay stays: a new socket once no offer came in time', async () => {
  const { session, states, last } = makeSession();
  const { ws, pc } = await connect(session, 'p1', { relay: true });
  pc.setConnectionState('disconnected');
  timers.tick(5_000); // the disconnect grace
  assert.equal(last(), 'reconnecting');
  assert.match(states.at(-1)[1], /the connection to the relay was lost; waiting to be placed again/);
  assert.equal(FakeSocket.all.length, 1);
  timers.tick(5_000); // the relay grace
  assert.ok(ws.closed);
  assert.match(states.at(-1)[1], /no new offer came; retrying in/);
  timers.tick(1_000);
  assert.equal(FakeSocket.all.length, 2);
  session.stop();
});

test('sayRole: control.hello again behind a relay with a control link, nothing otherwise', async () => {
  const { session } = makeSession();
  const { control } = await connect(session, 'p1', { relay: true });
  session.sayRole(); // the relay's upstream changed
  await until(() => control.sent.length === 2, 'two hellos');
  await assertEnvelopes(control.sent, 'p1', 1, [{ type: 'control.hello' }, { type: 'control.hello' }]);
  session.stop();

  const direct = makeSession();
  const parts = await connect(direct.session, 'p2');
  direct.session.sayRole();
  const view = makeSession({ keys: VIEW_KEYS });
  const viewParts = await connect(view.session, 'p3', { relay: true });
  view.session.sayRole();
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  assert.deepEqual(parts.control.sent, [], 'the desktop knows a direct viewer’s role from its answer');
  assert.deepEqual(viewParts.control.sent, [], 'a view-only link has no role to claim');
  direct.session.stop();
  view.session.stop();
});

test('waiting while connected through a relay that went away: close it and wait on the socket', async () => {
  const { session, events, last } = makeSession();
  const { ws, pc, control } = await connect(session, 'p1', { relay: true });
  ws.deliver({ type: 'waiting', reason: 'full' });
  assert.equal(last(), 'waiting');
  assert.ok(pc.closed);
  assert.deepEqual(events, ['open', 'close']);
  control.onclose?.(); // the dying connection's last events change nothing
  assert.equal(last(), 'waiting');
  timers.tick(60_000);
  assert.equal(FakeSocket.all.length, 1, 'our place in the queue is kept');
  await offerAgain(ws, 'p1', { relay: true });
  assert.equal(last(), 'connected');
  session.stop();
});
