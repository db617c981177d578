// What the top bar says about the other viewers and about control (docs/protocol.md §5 `presence`): a pure
// function of the last `presence` message and this page's link role, DOM-free so `node --test` covers every case.

const VIEW_ONLY_TITLE = 'This link lets you watch the desktop, not control it';

/** How a peer id is shown: "you" for this page's own id, otherwise "viewer" and the id's first 4 characters. */
export function peerName(peer, you = null) {
  return peer === you ? 'you' : `viewer ${peer.slice(0, 4)}`;
}

/**
 * Turn the last validated `presence` (or `null` before the first one) and the role of this page's link
 * (`"control"` or `"view"`) into what the bar shows:
 *
 *     {watching, watchingTitle, control, controlTitle, button, canControl}
 *
 * `watching`/`control` are short texts ('' for nothing to show), the titles their longer explanations. `button`
 * is `null` or `{label, title, action}` with `action` `"request"` or `"release"`: the control message a click
 * sends. `canControl` says whether the page may send input now; before any presence (a desktop that predates it)
 * the link alone decides, as it always did. The desktop enforces all of this itself; the page only follows it.
 */
export function describePresence(presence, linkRole) {
  const linkControls = linkRole === 'control';
  if (presence === null || presence === undefined) {
    return {
      watching: '',
      watchingTitle: '',
      control: linkControls ? '' : 'View only',
      controlTitle: linkControls ? '' : VIEW_ONLY_TITLE,
      button: null,
      canControl: linkControls,
    };
  }
  const { you, viewers, controllers, mode, holder, requests } = presence;
  const shown = {
    watching: `${viewers} watching`,
    watchingTitle: `${controllers} with the control link, ${viewers - controllers} view-only`,
  };
  // Both must agree: the desktop's word (the key that verified our answer) and our own link.
  if (!linkControls || presence.role !== 'control') {
    return { ...shown, control: 'View only', controlTitle: VIEW_ONLY_TITLE, button: null, canControl: false };
  }
  if (mode === 'shared') {
    return {
      ...shown,
      control: 'Everyone with the control link may control',
      controlTitle: 'Input from every viewer with the control link reaches the desktop',
      button: null,
      canControl: true,
    };
  }

  // Mode "one": only the holder's input counts.
  const name = (peer) => peerName(peer, you);
  if (holder === you) {
    const waiting = requests.filter((peer) => peer !== you);
    const button =
      waiting.length === 0
        ? {
            label: 'Release control',
            title: 'Let go of the mouse and keyboard so that another viewer can take them',
            action: 'release',
          }
        : {
            label: `Give control to ${name(waiting[0])}`,
            title: `${asking(waiting.map(name))}; releasing control passes it to ${name(waiting[0])}`,
            action: 'release',
          };
    return {
      ...shown,
      control: 'You have control',
      controlTitle: waiting.length === 0 ? 'Your mouse and keyboard reach the desktop' : asking(waiting.map(name)),
      button,
      canControl: true,
    };
  }
  const control = holder === null ? 'Nobody has control' : `${name(holder)} has control`;
  const controlTitle =
    holder === null ? 'Nobody’s input reaches the desktop' : `Only ${name(holder)}’s input reaches the desktop`;
  let button;
  if (requests.includes(you)) {
    const line = requests.indexOf(you);
    const ahead = line === 0 ? 'you are next' : `${line} ahead of you`;
    button = {
      label: 'Requested…',
      title: `Waiting for control (${ahead}); click to withdraw the request`,
      action: 'release',
    };
  } else if (holder === null) {
    button = { label: 'Take control', title: 'Send your mouse and keyboard to the desktop', action: 'request' };
  } else {
    button = {
      label: 'Request control',
      title: `Ask for control: ${name(holder)} can give it to you, and you get it when they release it`,
      action: 'request',
    };
  }
  return { ...shown, control, controlTitle, button, canControl: false };
}

function asking(names) {
  const [first, ...rest] = names;
  if (rest.length === 0) return `${first} asks for control`;
  return `${first} and ${rest.length} more ask for control`;
}

/**
 * Keeps `describePresence` current and gates input by it. `role()` returns this page's link role, `send(message)`
 * sends on the control channel (returning whether it did), and `release()` lets go of whatever input may be held
 * (InputCapture's `release`, which sends `input.release` through `sendInput`).
 */
export class ControlGate {
  constructor({ role, send, release = () => {} }) {
    this._role = role;
    this._send = send;
    this._release = release;
    this.presence = null;
    this.view = describePresence(null, role());
  }

  /** Whether input may be sent now. */
  get canControl() {
    return this.view.canControl;
  }

  /**
   * Take a new presence, or `null` (none on this connection yet; also after the role changed). Returns the new
   * view. When control is lost, `release()` runs first, while its `input.release` still passes the gate: the
   * desktop frees a former holder's keys by itself, but the page must forget what it believed held.
   */
  update(presence) {
    const next = describePresence(presence, this._role());
    if (this.view.canControl && !next.canControl) this._release();
    this.presence = presence;
    this.view = next;
    return next;
  }

  /** The input path: `message` goes to `send` only while this viewer may control. Returns whether it was sent. */
  sendInput(message) {
    return this.view.canControl && this._send(message) === true;
  }
}
