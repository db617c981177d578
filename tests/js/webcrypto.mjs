// Node 18 (Debian 12's) has WebCrypto only as node:crypto's `webcrypto`, not as the browser's global `crypto`.
import { webcrypto } from 'node:crypto';

if (globalThis.crypto?.subtle === undefined) {
  Object.defineProperty(globalThis, 'crypto', { value: webcrypto, configurable: true });
}
