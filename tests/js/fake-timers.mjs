// A minimal stand-in for setTimeout/clearTimeout that tests advance by hand. Node's own `mock.timers` needs
// Node 20.4; Debian 12 ships Node 18.

export class FakeTimers {
  install() {
    this.now = 0;
    this._queue = [];
    this._nextId = 1;
    this._saved = { setTimeout: globalThis.setTimeout, clearTimeout: globalThis.clearTimeout };
    globalThis.setTimeout = (fn, ms = 0, ...args) => {
      const id = this._nextId++;
      this._queue.push({ id, at: this.now + Math.max(0, Number(ms) || 0), fn, args });
      return id;
    };
    globalThis.clearTimeout = (id) => {
      this._queue = this._queue.filter((t) => t.id !== id);
    };
  }

  /** Run, in time order, every timer due within the next `ms` milliseconds (including ones they set). */
  tick(ms) {
    const end = this.now + ms;
    for (;;) {
      this._queue.sort((a, b) => a.at - b.at || a.id - b.id);
      const next = this._queue[0];
      if (next === undefined || next.at > end) break;
      this._queue.shift();
      this.now = next.at;
      next.fn(...next.args);
    }
    this.now = end;
  }

  uninstall() {
    Object.assign(globalThis, this._saved);
  }
}
