/** The native addon's per-environment resources: what a worker thread opened is closed when it ends. */
import assert from 'node:assert/strict';
import { readlinkSync } from 'node:fs';
import { describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';

const nativeUrl = new URL('../../src/native/native.js', import.meta.url).href;

const link = (fd: number): string | null => {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return null;
  }
};

describe('unit: native addon, per environment', () => {
  for (const how of ['terminated', 'crashed'] as const) {
    it(`netlink and UDP sockets a worker opened and never closed are closed when it is ${how}`, async () => {
      const code = `
        const { parentPort } = require('node:worker_threads');
        import(${JSON.stringify(nativeUrl)}).then(({ native }) => {
          const n = native();
          const nl = n.nlOpen(4);
          n.nlRecv(nl, 1 << 20, false); // grows the receive buffer that must be freed too
          const udp = n.udpOpen(2, Buffer.from([127, 0, 0, 1]), 0, 0, 0);
          parentPort.postMessage([nl, udp]);
          parentPort.on('message', () => { throw new Error('crash'); });
          setInterval(() => {}, 1000);
        });`;
      const w = new Worker(code, { eval: true });
      const fds = await new Promise<number[]>((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
      });
      const before = fds.map(link);
      for (const l of before) assert.match(l ?? '', /^socket:\[\d+\]$/);
      if (how === 'terminated') await w.terminate();
      else {
        const exited = new Promise((r) => w.once('exit', r));
        w.once('error', () => undefined);
        w.postMessage('crash');
        await exited;
      }
      // Gone, or (if the number was reused meanwhile) no longer the same socket.
      fds.forEach((fd, i) => assert.notEqual(link(fd), before[i], `fd ${fd} still open`));
    });
  }
});
