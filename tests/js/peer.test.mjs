// node --test tests/js/ — PeerSession's handshake and reconnection, with a fake websocket and a fake
// RTCPeerConnection (the real ones are exercised by the end-to-end browser tests).
import './webcrypto.mjs';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { afterEach, beforeEach, test } from 'node:test';

import { answerMac, fromB64url, offerMac } from '../../impromptu/web/lib/keys.js';
import { BACKOFF, PeerSession, backoffDelay } from '../../impromptu/web/lib/peer.js';
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

/** Let promises and WebCrypto (which runs off the main thread) make progress until `cond()` holds. */
async function until(cond, what = 'condition') {
  for (let i = 0; i < 2000; i++) {
    if (cond()) return;
    await new Promise((r) => setImmediate(r));
  }
  assert.fail(`timed out waiting for ${what}`);
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

async function connect(session, peer = 'p1') {
  session.start();
  const ws = FakeSocket.all.at(-1);
  ws.open();
  ws.deliver({ type: 'welcome', peer });
  ws.deliver({ type: 'offer', peer, sdp: OFFER_SDP, mac: await offerMac(KEYS.kv, peer, OFFER_SDP) });
  await until(() => ws.sent.length === 2, 'the answer');
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

test('desktop-gone: close the peer connection and wait on the same socket', async () => {
  const { session, events, last } = makeSession();
  const { ws, pc } = await connect(session);
  ws.deliver({ type: 'desktop-gone' });
  assert.equal(last(), 'waiting');
  assert.ok(pc.closed);
  assert.ok(!ws.closed);
  assert.deepEqual(events, ['open', 'close']);
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

test('a lost signaling socket, a closed control channel, a long disconnect all reconnect', async () => {
  for (const breakIt of [
    ({ ws }) => ws.drop(),
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
