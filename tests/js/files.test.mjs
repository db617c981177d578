// node --test tests/js/ — files.js, the page's side of docs/protocol.md §9, against a fake connection and a fake
// desktop (file-desktop.mjs): uploads and downloads, backpressure, resume after a drop, cancel, refusals, hashes.
import './webcrypto.mjs';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';

import {
  CHUNK,
  FileTransfers,
  HIGH_WATER,
  LOW_WATER,
  MAX_ACTIVE,
  MAX_ATTEMPTS,
  formatBytes,
  formatEta,
  formatRate,
  randomId,
} from '../../impromptu/web/lib/files.js';
import { parseControl } from '../../impromptu/web/lib/protocol.js';
import { FakeDesktop, FakeNet, fakeFile, sha256 } from './file-desktop.mjs';

const LIST = { type: 'file.list', enabled: true, files: [], upload: true, max_size: 1 << 30 };

async function until(cond, what = 'condition', withinMs = 10_000) {
  const deadline = Date.now() + withinMs;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

/** A FileTransfers connected to a fresh fake desktop. */
function setup({ bytesPerTurn, list = LIST, ...options } = {}) {
  const desktop = new FakeDesktop();
  const net = new FakeNet(desktop, { bytesPerTurn });
  const saved = [];
  const changes = [];
  const control = [];
  const files = new FileTransfers({
    openChannel: net.openChannel,
    send: (m) => control.push(m) > 0,
    save: (blob, name) => saved.push({ blob, name }),
    onChange: (t, what) => changes.push([t?.id ?? null, what, t?.state]),
    retryDelay: () => 5,
    ...options,
  });
  files.connected(true);
  if (list !== null) files.setList(list);
  return { desktop, net, files, saved, changes, control };
}

const finished = (t) => () => t.finished;
const bytesOf = async (blob) => new Uint8Array(await blob.arrayBuffer());

test('upload: the request, then the bytes in ≤ 64 KiB messages, then end with the SHA-256; done names the file', async () => {
  const { desktop, net, files } = setup();
  const data = randomBytes(300_000);
  const t = files.upload(fakeFile('report.pdf', data));
  assert.equal(t.direction, 'upload');
  await until(finished(t), 'the upload');
  assert.equal(t.state, 'done', t.error);
  assert.equal(t.savedAs, 'report.pdf');
  assert.deepEqual(desktop.requests, [{ type: 'upload', id: t.id, name: 'report.pdf', size: 300_000, replace: false }]);
  assert.match(t.id, /^[0-9a-f]{32}$/);
  assert.deepEqual(desktop.files.get('report.pdf'), new Uint8Array(data));
  const end = desktop.messages.find((m) => m.type === 'end');
  assert.equal(end.sha256, sha256(data));
  assert.deepEqual(net.channels[0].options, { ordered: true });
  assert.equal(net.channels[0].binaryType, 'arraybuffer');
  const snap = t.snapshot();
  assert.equal(snap.sent, 300_000);
  assert.equal(snap.received, 0);
  assert.deepEqual(snap.offsets, [0]);
  assert.equal(net.open.length, 0, 'the channel is closed after done');
});

test('upload: a name already taken gets the desktop’s free variant, shown as savedAs; replace asks to overwrite', async () => {
  const { desktop, files } = setup();
  desktop.files.set('report.pdf', new Uint8Array(1));
  const a = files.upload(fakeFile('report.pdf', randomBytes(10)));
  await until(finished(a));
  assert.equal(a.savedAs, 'report (1).pdf');
  const b = files.upload(fakeFile('report.pdf', randomBytes(10)), { replace: true });
  await until(finished(b));
  assert.equal(b.savedAs, 'report.pdf');
  assert.equal(desktop.requests.at(-1).replace, true);
  assert.notEqual(a.id, b.id);
});

test('upload: an empty file is a request, ready, end with the empty hash, done', async () => {
  const { desktop, files } = setup();
  const t = files.upload(fakeFile('empty.txt', new Uint8Array(0)));
  await until(finished(t));
  assert.equal(t.state, 'done', t.error);
  assert.deepEqual(
    desktop.messages.map((m) => m.type),
    ['upload', 'end'],
  );
  assert.equal(desktop.messages[1].sha256, 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  assert.equal(desktop.files.get('empty.txt').byteLength, 0);
});

test('upload: backpressure keeps the channel’s buffer under 1 MiB on a slow link, without sleeping', async () => {
  const { desktop, net, files } = setup({ bytesPerTurn: 32 * 1024 });
  const data = randomBytes(4 * 1024 * 1024 + 123);
  const file = fakeFile('big.bin', data);
  const t = files.upload(file);
  let peak = 0;
  let sawPartial = false;
  await until(() => {
    const s = t.snapshot();
    if (s.sent > 0 && s.sent < s.size) sawPartial = true;
    peak = Math.max(peak, net.channels[0]?.bufferedAmount ?? 0);
    return t.finished;
  }, 'the upload', 30_000);
  assert.equal(t.state, 'done', t.error);
  const ch = net.channels[0];
  assert.ok(ch.maxBuffered <= HIGH_WATER, `buffered ${ch.maxBuffered} > ${HIGH_WATER}`);
  assert.ok(ch.maxBuffered > LOW_WATER, 'the buffer was actually used');
  assert.ok(sawPartial, 'progress was reported along the way');
  assert.equal(file.bytesRead, data.length, 'the file was read once');
  assert.equal(sha256(desktop.files.get('big.bin')), sha256(data));
});

test('upload: the connection drops mid-way; after reconnecting it resumes with the same id from the desktop’s offset', async () => {
  const { desktop, net, files } = setup({ bytesPerTurn: 64 * 1024 });
  const data = randomBytes(3 * 1024 * 1024);
  const file = fakeFile('movie.mkv', data);
  const t = files.upload(file);
  await until(() => [...desktop.held.values()].some((p) => p.length >= 1024 * 1024), 'a first MiB at the desktop');
  net.drop();
  await until(() => t.state === 'waiting', 'waiting');
  assert.equal(t.detail, 'reconnecting');
  files.disconnected();
  const held = [...desktop.held.values()][0].length;
  assert.ok(held > 0 && held < data.length);
  net.restore();
  files.connected(true);
  await until(finished(t), 'the resumed upload');
  assert.equal(t.state, 'done', t.error);
  const [first, second] = desktop.requests;
  assert.equal(second.id, first.id, 'the same id');
  assert.deepEqual(t.offsets, [0, held]);
  assert.deepEqual(desktop.files.get('movie.mkv'), new Uint8Array(data));
  assert.equal(desktop.messages.find((m) => m.type === 'end').sha256, sha256(data));
});

test('upload: a drop without close events (the browser closed the connection) is noticed through disconnected()', async () => {
  const { desktop, net, files } = setup({ bytesPerTurn: 64 * 1024 });
  const data = randomBytes(2 * 1024 * 1024);
  const t = files.upload(fakeFile('a.bin', data));
  await until(() => [...desktop.held.values()].some((p) => p.length >= 512 * 1024));
  net.drop({ fire: false });
  files.disconnected();
  assert.equal(t.state, 'waiting');
  net.restore();
  files.connected(true);
  await until(finished(t));
  assert.equal(t.state, 'done', t.error);
  assert.equal(t.offsets.length, 2);
  assert.deepEqual(desktop.files.get('a.bin'), new Uint8Array(data));
});

test('upload: a desktop that kept less than was hashed → the hash goes back to a checkpoint, not to the start', async () => {
  const { desktop, net, files } = setup({ bytesPerTurn: 1024 * 1024 });
  const size = 20 * 1024 * 1024 + 777;
  const data = randomBytes(size);
  const file = fakeFile('disk.img', data);
  const t = files.upload(file);
  await until(() => [...desktop.held.values()].some((p) => p.length >= 18 * 1024 * 1024), '18 MiB', 30_000);
  const keep = 17 * 1024 * 1024 + 12_345; // an odd amount, past the 16 MiB checkpoint
  desktop.hold = (n) => Math.min(n, keep);
  net.drop();
  files.disconnected();
  const readBefore = file.bytesRead;
  net.restore();
  files.connected(true);
  await until(finished(t), 'the resumed upload', 30_000);
  assert.equal(t.state, 'done', t.error);
  assert.deepEqual(t.offsets, [0, keep]);
  assert.equal(sha256(desktop.files.get('disk.img')), sha256(data));
  const reread = file.bytesRead - readBefore - (size - keep);
  assert.ok(reread <= keep - 16 * 1024 * 1024, `re-read ${reread} bytes to re-hash`);
});

test('upload: a resume at offset 0 (the desktop lost it) re-hashes from the start and still ends right', async () => {
  const { desktop, net, files } = setup({ bytesPerTurn: 64 * 1024 });
  const data = randomBytes(1024 * 1024 + 5);
  const t = files.upload(fakeFile('x.bin', data));
  await until(() => [...desktop.held.values()].some((p) => p.length >= 256 * 1024));
  desktop.hold = () => 0;
  net.drop();
  files.disconnected();
  net.restore();
  files.connected(true);
  await until(finished(t));
  assert.equal(t.state, 'done', t.error);
  assert.deepEqual(t.offsets, [0, 0]);
  assert.deepEqual(desktop.files.get('x.bin'), new Uint8Array(data));
});

test('upload: cancel sends cancel on the channel and closes it; the desktop deletes what it held', async () => {
  const { desktop, net, files } = setup({ bytesPerTurn: 64 * 1024 });
  const t = files.upload(fakeFile('big.bin', randomBytes(4 * 1024 * 1024)));
  await until(() => t.snapshot().sent > 256 * 1024, 'some progress');
  assert.equal(files.cancel(t.id), true);
  assert.equal(t.state, 'cancelled');
  await until(() => desktop.messages.some((m) => m.type === 'cancel'), 'the cancel');
  await until(() => net.open.length === 0, 'the channel closed');
  assert.equal(desktop.held.size, 0);
  assert.equal(desktop.files.size, 0);
  assert.equal(files.cancel(t.id), false, 'only once');
});

test('upload: cancelled while disconnected → the desktop is told to delete it once connected again', async () => {
  const { desktop, net, files } = setup({ bytesPerTurn: 64 * 1024 });
  const t = files.upload(fakeFile('big.bin', randomBytes(2 * 1024 * 1024)));
  await until(() => [...desktop.held.values()].some((p) => p.length > 0));
  net.drop();
  files.disconnected();
  t.cancel();
  assert.equal(t.state, 'cancelled');
  assert.equal(desktop.held.size, 1);
  net.restore();
  files.connected(true);
  await until(() => desktop.held.size === 0, 'the held data deleted');
  assert.deepEqual(
    desktop.messages.slice(-2).map((m) => m.type),
    ['upload', 'cancel'],
  );
  assert.equal(desktop.requests.at(-1).id, t.id);
  assert.equal(t.state, 'cancelled');
});

test('upload: the desktop’s error is the transfer’s error, word for word', async () => {
  const { desktop, files } = setup();
  desktop.refuse = 'not enough free space on the desktop for big.bin';
  const t = files.upload(fakeFile('big.bin', randomBytes(1000)));
  await until(finished(t));
  assert.equal(t.state, 'failed');
  assert.equal(t.error, 'not enough free space on the desktop for big.bin');
  assert.deepEqual(
    desktop.messages.map((m) => m.type),
    ['upload'],
    'no cancel sent back after an error',
  );
});

test('upload: refused at once when the list says no uploads, or the file is too big', () => {
  const { files, net } = setup({ list: { ...LIST, upload: false } });
  const t = files.upload(fakeFile('a.txt', new Uint8Array(3)));
  assert.equal(t.state, 'failed');
  assert.match(t.error, /may not upload/);
  files.setList({ ...LIST, max_size: 2 });
  const u = files.upload(fakeFile('a.txt', new Uint8Array(3)));
  assert.equal(u.state, 'failed');
  assert.match(u.error, /larger than the desktop accepts/);
  assert.equal(net.channels.length, 0);
});

test('a desktop that never answers: attempts time out, and after a few the transfer fails', async () => {
  const { desktop, files, net } = setup({ answerTimeoutMs: 20 });
  desktop.silent = true;
  const t = files.upload(fakeFile('a.txt', new Uint8Array(3)));
  await until(finished(t));
  assert.equal(t.state, 'failed');
  assert.match(t.error, /did not answer/);
  assert.equal(net.channels.length, MAX_ATTEMPTS);
});

test('at most MAX_ACTIVE transfers at once; the others wait, queued, and all finish', async () => {
  const { desktop, net, files } = setup({ bytesPerTurn: 64 * 1024 });
  const ts = [];
  for (let i = 0; i < MAX_ACTIVE + 3; i++) ts.push(files.upload(fakeFile(`f${i}.bin`, randomBytes(200_000 + i))));
  assert.equal(net.channels.length, MAX_ACTIVE);
  assert.deepEqual(
    ts.slice(MAX_ACTIVE).map((t) => [t.state, t.detail]),
    Array(3).fill(['waiting', 'queued']),
  );
  let peak = 0;
  await until(() => {
    peak = Math.max(peak, net.open.length);
    return ts.every((t) => t.finished);
  });
  assert.ok(peak <= MAX_ACTIVE);
  assert.ok(ts.every((t) => t.state === 'done'));
  assert.equal(desktop.files.size, MAX_ACTIVE + 3);
});

test('download: the file, its bytes, end; the hash checks; saved under its name', async () => {
  const { desktop, files, saved } = setup();
  const data = randomBytes(500_000);
  desktop.files.set('photo.jpg', data);
  const t = files.download('photo.jpg');
  await until(finished(t));
  assert.equal(t.state, 'done', t.error);
  assert.deepEqual(desktop.requests, [{ type: 'download', name: 'photo.jpg', offset: 0 }]);
  assert.equal(saved.length, 1);
  assert.equal(saved[0].name, 'photo.jpg');
  assert.deepEqual(await bytesOf(saved[0].blob), new Uint8Array(data));
  assert.equal(t.savedAs, 'photo.jpg');
  const snap = t.snapshot();
  assert.equal(snap.received, 500_000);
  assert.equal(snap.size, 500_000);
});

test('download: an empty file saves an empty Blob', async () => {
  const { desktop, files, saved } = setup();
  desktop.files.set('empty', new Uint8Array(0));
  const t = files.download('empty');
  await until(finished(t));
  assert.equal(t.state, 'done', t.error);
  assert.equal(saved[0].blob.size, 0);
});

test('download: dropped mid-way, resumed from the bytes it has (offset), then saved whole', async () => {
  const { desktop, net, files, saved } = setup();
  const data = randomBytes(3 * 1024 * 1024 + 99);
  desktop.files.set('big.bin', data);
  desktop.dropAfter = { bytes: 1024 * 1024 + CHUNK, net };
  const t = files.download('big.bin');
  await until(() => t.state === 'waiting', 'the drop');
  files.disconnected();
  const have = t.snapshot().received;
  assert.equal(have, 1024 * 1024 + CHUNK);
  net.restore();
  files.connected(true);
  await until(finished(t));
  assert.equal(t.state, 'done', t.error);
  assert.deepEqual(desktop.requests.at(-1), { type: 'download', name: 'big.bin', offset: have });
  assert.deepEqual(t.offsets, [0, have]);
  assert.deepEqual(await bytesOf(saved[0].blob), new Uint8Array(data));
});

test('download: one corrupted byte → failed, nothing saved', async () => {
  const { desktop, files, saved } = setup();
  desktop.files.set('doc.odt', randomBytes(200_000));
  desktop.corrupt = () => 123_456;
  const t = files.download('doc.odt');
  await until(finished(t));
  assert.equal(t.state, 'failed');
  assert.match(t.error, /SHA-256 does not match.*nothing was saved/);
  assert.equal(saved.length, 0);
});

test('download: a file that is not there is the desktop’s error; cancel closes the channel', async () => {
  const { desktop, net, files, saved } = setup({ bytesPerTurn: 1 });
  const t = files.download('nope.txt');
  await until(finished(t));
  assert.equal(t.state, 'failed');
  assert.equal(t.error, 'there is no file called nope.txt');
  desktop.silent = true;
  const u = files.download('slow.txt');
  await until(() => net.open.length === 1);
  assert.equal(files.cancel(u.id), true);
  assert.equal(u.state, 'cancelled');
  await until(() => net.open.length === 0);
  assert.equal(saved.length, 0);
});

test('download: the file changed size between attempts → failed, nothing saved', async () => {
  const { desktop, net, files, saved } = setup();
  desktop.files.set('log.txt', randomBytes(300_000));
  desktop.dropAfter = { bytes: 100_000, net };
  const t = files.download('log.txt');
  await until(() => t.state === 'waiting');
  files.disconnected();
  desktop.files.set('log.txt', randomBytes(400_000));
  net.restore();
  files.connected(true);
  await until(finished(t));
  assert.equal(t.state, 'failed');
  assert.match(t.error, /changed/);
  assert.equal(saved.length, 0);
});

test('behind a relay: no list, and transfers waiting fail with a reason', async () => {
  const { net, files } = setup();
  net.drop();
  files.disconnected();
  const t = files.download('a');
  assert.equal(t.state, 'waiting');
  files.connected(false);
  assert.equal(t.state, 'failed');
  assert.match(t.error, /relay/);
  assert.equal(files.list, null);
  files.setList(LIST);
  assert.equal(files.list, null, 'a list forwarded by a relay is ignored');
  assert.equal(files.enabled, false);
});

test('the list, refresh, enabled and canUpload', () => {
  const { files, control, changes } = setup({ list: null });
  assert.equal(files.enabled, false);
  assert.equal(files.refresh(), true);
  assert.deepEqual(control, [{ type: 'file.list' }]);
  files.setList({ ...LIST, upload: false });
  assert.equal(files.enabled, true);
  assert.equal(files.canUpload, false);
  assert.deepEqual(changes.at(-1), [null, 'list', undefined]);
  files.setList({ type: 'file.list', enabled: false, files: [], upload: false, max_size: 0 });
  assert.equal(files.enabled, false);
  files.disconnected();
  assert.equal(files.refresh(), false);
});

test('finished transfers can be removed from the list; running ones cannot', async () => {
  const { desktop, files } = setup({ bytesPerTurn: 1024 });
  desktop.files.set('a', randomBytes(10));
  const t = files.download('a');
  const u = files.upload(fakeFile('b', randomBytes(500_000)));
  await until(finished(t));
  assert.equal(files.remove(u.id), false);
  assert.equal(files.remove(t.id), true);
  assert.deepEqual(
    files.transfers.map((x) => x.id),
    [u.id],
  );
  u.cancel();
});

test('parseControl: file.list, with or without files', () => {
  const full = {
    type: 'file.list',
    enabled: true,
    files: [{ name: 'a b.txt', size: 3, mtime: 1700000000.5, extra: 1 }],
    upload: true,
    max_size: 4 * 2 ** 30,
  };
  assert.deepEqual(parseControl(JSON.stringify(full)), {
    ok: true,
    msg: { type: 'file.list', enabled: true, files: [{ name: 'a b.txt', size: 3, mtime: 1700000000.5 }], upload: true, max_size: 4 * 2 ** 30 },
  });
  assert.deepEqual(parseControl('{"type":"file.list","enabled":false}'), {
    ok: true,
    msg: { type: 'file.list', enabled: false, files: [], upload: false, max_size: 0 },
  });
  const bad = (patch) => parseControl(JSON.stringify({ ...full, ...patch }));
  assert.equal(bad({ enabled: 'yes' }).reason, 'file.list.enabled');
  assert.equal(bad({ files: {} }).reason, 'file.list.files');
  assert.equal(bad({ files: [{ name: '', size: 1, mtime: 0 }] }).reason, 'file.list.files');
  assert.equal(bad({ files: [{ name: 'x', size: -1, mtime: 0 }] }).reason, 'file.list.files');
  assert.equal(bad({ files: [{ name: 'x', size: 1 }] }).reason, 'file.list.files');
  assert.equal(bad({ files: Array(1001).fill({ name: 'x', size: 1, mtime: 0 }) }).reason, 'file.list.files');
  assert.equal(bad({ upload: 1 }).reason, 'file.list.upload');
  assert.equal(bad({ max_size: 1.5 }).reason, 'file.list.max_size');
});

test('randomId, and the figures the page shows', () => {
  assert.match(randomId(), /^[0-9a-f]{32}$/);
  assert.equal(randomId((a) => a.fill(0xab)), 'ab'.repeat(16));
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(999), '999 B');
  assert.equal(formatBytes(1500), '1.50 kB');
  assert.equal(formatBytes(12_345_678), '12.3 MB');
  assert.equal(formatBytes(4 * 2 ** 30), '4.29 GB');
  assert.equal(formatBytes(999_999), '1.00 MB');
  assert.equal(formatRate(3_200_000), '3.2 MB/s');
  assert.equal(formatRate(123_000_000), '123 MB/s');
  assert.equal(formatRate(null), '');
  assert.equal(formatEta(12.2), '13 s');
  assert.equal(formatEta(185), '3 min 5 s');
  assert.equal(formatEta(7800), '2 h 10 min');
  assert.equal(formatEta(Infinity), '');
});

test('rate and eta: bytes over the last few seconds, and the time left at that rate', async () => {
  let now = 0;
  const { files } = setup({ bytesPerTurn: 16 * 1024, now: () => now });
  const t = files.upload(fakeFile('f', randomBytes(8_000_000)));
  const seen = [];
  let sampleAt = 500;
  while (!t.finished) {
    await new Promise((r) => setImmediate(r));
    // The clock follows the bytes, 16 KiB per 10 ms (1.64 MB/s), however many turns a chunk takes (reading a
    // Blob takes a varying number on a loaded machine: a clock ticking per turn made the rate vary with load).
    now = (t.bytes / (16 * 1024)) * 10;
    if (now > 0 && now <= 200) assert.equal(t.rate, null, 'no rate in the first half second');
    if (now >= sampleAt) {
      seen.push(t.snapshot());
      sampleAt += 500;
    }
  }
  assert.equal(t.state, 'done', t.error);
  assert.equal(t.rate, null, 'no rate once finished');
  const mid = seen.filter((s) => s.rate !== null && s.state === 'running');
  assert.ok(mid.length >= 3, `${mid.length} samples with a rate`);
  for (const s of mid) {
    assert.ok(s.rate > 1.4e6 && s.rate < 1.9e6, `rate ${s.rate}`);
    assert.ok(Math.abs(s.eta - (s.size - s.sent) / s.rate) < 1e-6);
  }
});
