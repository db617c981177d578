// node --test tests/js/ — what the bar shows for each `presence` (docs/protocol.md §5) and the input gate.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ControlGate, describePresence, peerName } from '../../impromptu/web/lib/presence.js';
import { controlMessages as M, parseControl } from '../../impromptu/web/lib/protocol.js';

const ME = '3f2a9c0d11223344';
const A = 'a1b2c3d4e5f60718';
const B = 'b00b1e5000000001';

/** A validated presence, as app.js gets it from parseControl. */
function presence(fields = {}) {
  const raw = { type: 'presence', you: ME, role: 'control', viewers: 3, controllers: 2, mode: 'one', holder: null, requests: [], ...fields };
  const parsed = parseControl(JSON.stringify(raw));
  assert.ok(parsed.ok, parsed.reason);
  return parsed.msg;
}

const shared = (fields = {}) => presence({ mode: 'shared', holder: null, requests: [], ...fields });

test('peerName: "you", or "viewer" and the first 4 characters', () => {
  assert.equal(peerName(A, ME), 'viewer a1b2');
  assert.equal(peerName(ME, ME), 'you');
  assert.equal(peerName(A), 'viewer a1b2');
  assert.equal(peerName('ab', ME), 'viewer ab');
});

test('before any presence the link alone decides (an older desktop keeps working)', () => {
  assert.deepEqual(describePresence(null, 'control'), {
    watching: '',
    watchingTitle: '',
    control: '',
    controlTitle: '',
    button: null,
    canControl: true,
  });
  const view = describePresence(null, 'view');
  assert.equal(view.canControl, false);
  assert.equal(view.control, 'View only');
  assert.equal(view.button, null);
  assert.equal(view.watching, '');
  assert.equal(describePresence(undefined, 'control').canControl, true);
});

test('watching counts everyone, the title splits control and view-only links', () => {
  const d = describePresence(presence({ viewers: 3, controllers: 2 }), 'control');
  assert.equal(d.watching, '3 watching');
  assert.equal(d.watchingTitle, '2 with the control link, 1 view-only');
  const alone = describePresence(presence({ viewers: 1, controllers: 1 }), 'control');
  assert.equal(alone.watching, '1 watching');
  assert.equal(alone.watchingTitle, '1 with the control link, 0 view-only');
  const viewers = describePresence(presence({ role: 'view', viewers: 5, controllers: 0 }), 'view');
  assert.equal(viewers.watching, '5 watching');
  assert.equal(viewers.watchingTitle, '0 with the control link, 5 view-only');
});

test('shared mode: every control link controls, no button', () => {
  const d = describePresence(shared(), 'control');
  assert.equal(d.canControl, true);
  assert.equal(d.control, 'Everyone with the control link may control');
  assert.equal(d.button, null);
});

test('view-only: never control, never a button, in either mode', () => {
  for (const p of [
    shared({ role: 'view' }),
    presence({ role: 'view' }),
    presence({ role: 'view', holder: A }),
    presence({ role: 'view', holder: A, requests: [B] }),
  ]) {
    const d = describePresence(p, 'view');
    assert.equal(d.canControl, false, JSON.stringify(p));
    assert.equal(d.control, 'View only');
    assert.equal(d.button, null);
  }
});

test('the link and the desktop must both grant control', () => {
  // A control link that the desktop counts as view-only (or the reverse) cannot control.
  const desktopSaysView = describePresence(shared({ role: 'view' }), 'control');
  assert.equal(desktopSaysView.canControl, false);
  assert.equal(desktopSaysView.button, null);
  const linkSaysView = describePresence(shared({ role: 'control' }), 'view');
  assert.equal(linkSaysView.canControl, false);
  assert.equal(linkSaysView.control, 'View only');
  // Even as holder.
  assert.equal(describePresence(presence({ role: 'view', holder: ME }), 'control').canControl, false);
});

test('mode one, nobody holds control: "Take control" requests it', () => {
  const d = describePresence(presence({ holder: null }), 'control');
  assert.equal(d.canControl, false);
  assert.equal(d.control, 'Nobody has control');
  assert.equal(d.button.label, 'Take control');
  assert.equal(d.button.action, 'request');
});

test('mode one, you hold control: "Release control"', () => {
  const d = describePresence(presence({ holder: ME }), 'control');
  assert.equal(d.canControl, true);
  assert.equal(d.control, 'You have control');
  assert.equal(d.button.label, 'Release control');
  assert.equal(d.button.action, 'release');
});

test('mode one, you hold control and others ask: give it to the oldest request', () => {
  const one = describePresence(presence({ holder: ME, requests: [A] }), 'control');
  assert.equal(one.canControl, true);
  assert.equal(one.control, 'You have control');
  assert.equal(one.button.label, 'Give control to viewer a1b2');
  assert.equal(one.button.action, 'release');
  assert.match(one.controlTitle, /viewer a1b2 asks for control/);

  const two = describePresence(presence({ holder: ME, requests: [B, A] }), 'control');
  assert.equal(two.button.label, 'Give control to viewer b00b', 'oldest first');
  assert.match(two.controlTitle, /viewer b00b and 1 more ask/);
});

test('mode one, someone else holds control: "Request control"', () => {
  const d = describePresence(presence({ holder: A }), 'control');
  assert.equal(d.canControl, false);
  assert.equal(d.control, 'viewer a1b2 has control');
  assert.equal(d.button.label, 'Request control');
  assert.equal(d.button.action, 'request');
  // Other viewers' requests don't make ours.
  const others = describePresence(presence({ holder: A, requests: [B] }), 'control');
  assert.equal(others.button.label, 'Request control');
  assert.equal(others.button.action, 'request');
});

test('mode one, our request is pending: "Requested…" withdraws it', () => {
  const next = describePresence(presence({ holder: A, requests: [ME, B] }), 'control');
  assert.equal(next.canControl, false);
  assert.equal(next.control, 'viewer a1b2 has control');
  assert.equal(next.button.label, 'Requested…');
  assert.equal(next.button.action, 'release');
  assert.match(next.button.title, /you are next/);
  assert.match(next.button.title, /withdraw/);

  const behind = describePresence(presence({ holder: A, requests: [B, ME] }), 'control');
  assert.equal(behind.button.label, 'Requested…');
  assert.match(behind.button.title, /1 ahead of you/);

  // Nobody holds it yet (a moment the desktop should not leave us in): still ours to withdraw.
  const unheld = describePresence(presence({ holder: null, requests: [ME] }), 'control');
  assert.equal(unheld.button.label, 'Requested…');
  assert.equal(unheld.canControl, false);
});

test('every button sends a message the builders make', () => {
  for (const p of [presence(), presence({ holder: ME }), presence({ holder: ME, requests: [A] }), presence({ holder: A }),
    presence({ holder: A, requests: [ME] })]) {
    const { button } = describePresence(p, 'control');
    assert.ok(['request', 'release'].includes(button.action), button.action);
    assert.equal(typeof button.label, 'string');
    assert.ok(button.title.length > 0);
  }
});

// ---- ControlGate ----

function gate(role = 'control') {
  const sent = [];
  const state = { role, open: true };
  const g = new ControlGate({
    role: () => state.role,
    send: (m) => {
      if (!state.open) return false;
      sent.push(m);
      return true;
    },
    release: () => g.sendInput(M.release()),
  });
  return { g, sent, state };
}

test('gate: before any presence a control link sends input, a view link does not', () => {
  const c = gate('control');
  assert.equal(c.g.canControl, true);
  assert.equal(c.g.presence, null);
  assert.equal(c.g.sendInput(M.move(1, 2)), true);
  assert.deepEqual(c.sent, [M.move(1, 2)]);

  const v = gate('view');
  assert.equal(v.g.canControl, false);
  assert.equal(v.g.sendInput(M.move(1, 2)), false);
  assert.deepEqual(v.sent, []);
});

test('gate: input passes only while this viewer may control', () => {
  const { g, sent } = gate();
  g.update(presence({ holder: A }));
  sent.length = 0; // the release of the pre-presence default (see below)
  assert.equal(g.sendInput(M.key('KeyA', 'a', true)), false);
  g.update(presence({ holder: ME }));
  assert.equal(g.sendInput(M.key('KeyA', 'a', true)), true);
  g.update(shared());
  assert.equal(g.sendInput(M.move(3, 4)), true);
  assert.deepEqual(sent, [M.key('KeyA', 'a', true), M.move(3, 4)]);
});

test('gate: losing control sends input.release once, before the gate closes', () => {
  const { g, sent } = gate();
  g.update(presence({ holder: ME }));
  g.sendInput(M.key('ShiftLeft', 'Shift', true));
  g.update(presence({ holder: A }));
  assert.deepEqual(sent, [M.key('ShiftLeft', 'Shift', true), M.release()]);
  assert.equal(g.canControl, false);
  // Still without control: no more releases, and input stays out.
  g.update(presence({ holder: A, requests: [ME] }));
  g.update(presence({ holder: null }));
  assert.equal(g.sendInput(M.key('ShiftLeft', 'Shift', false)), false);
  assert.deepEqual(sent, [M.key('ShiftLeft', 'Shift', true), M.release()]);
});

test('gate: the first presence without control ends the pre-presence default: one release', () => {
  const { g, sent } = gate();
  g.update(presence({ holder: A }));
  assert.deepEqual(sent, [M.release()]);
  const view = gate('view');
  view.g.update(presence({ role: 'view' }));
  assert.deepEqual(view.sent, [], 'a view link never had control');
});

test('gate: gaining or keeping control releases nothing', () => {
  const { g, sent } = gate();
  g.update(presence({ holder: null }));
  sent.length = 0;
  g.update(presence({ holder: ME }));
  g.update(presence({ holder: ME, requests: [A] }));
  g.update(null);
  g.update(shared());
  assert.deepEqual(sent, []);
});

test('gate: shared → one without holding control is a loss too', () => {
  const { g, sent } = gate();
  g.update(shared());
  g.update(presence({ holder: A }));
  assert.deepEqual(sent, [M.release()]);
});

test('gate: update returns and keeps the view; presence is the last one, or null after a reset', () => {
  const { g } = gate();
  const p = presence({ holder: ME });
  const view = g.update(p);
  assert.equal(view, g.view);
  assert.equal(g.presence, p);
  assert.equal(g.view.control, 'You have control');
  g.update(null);
  assert.equal(g.presence, null);
  assert.equal(g.canControl, true);
});

test('gate: the role is read at each update', () => {
  const { g, state } = gate('control');
  state.role = 'view';
  assert.equal(g.canControl, true, 'unchanged until the next update');
  g.update(null);
  assert.equal(g.canControl, false);
  assert.equal(g.view.control, 'View only');
});

test('gate: a closed channel counts as not sent', () => {
  const { g, state } = gate();
  state.open = false;
  assert.equal(g.sendInput(M.move(0, 0)), false);
});
