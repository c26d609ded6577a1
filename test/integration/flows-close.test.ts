/**
 * Integration: packets of flows admitted by a `users:` rule that the kernel
 * sends without the user's socket (an orphaned socket after close(), a
 * TIME_WAIT minisocket) are part of the flow, not strangers on it. Found by
 * an internal review: with the identity re-check alone, the data still
 * queued at close() was refused and the server left hanging.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, beforeEach, describe, it } from 'node:test';
import { HOSTS, World } from '../world/world.js';

const PORT = 7000;

// Server in the world: accept; wait; read everything; print the byte count; optionally close first/after.
const SERVER = `
import socket, sys, time, threading
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("ready", flush=True)
def serve(c):
    time.sleep(1.0)
    c.settimeout(4.0)
    n = 0
    try:
        while True:
            b = c.recv(65536)
            if not b: break
            n += len(b)
        print("eof", n, flush=True)
    except Exception as e:
        print("err", type(e).__name__, n, flush=True)
    time.sleep(0.2)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
`;

// Client: connect, send N bytes into a big send buffer, close at once (the rest leaves after close()).
const CLIENT = `
import socket, sys
c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8*1024*1024)
c.connect((sys.argv[1], int(sys.argv[2])))
c.sendall(b"x" * int(sys.argv[3]))
c.close()
print("sent", sys.argv[3], flush=True)
`;

describe('integration: identity-admitted TCP flows end cleanly after close()', () => {
  let w: World;
  let out = '';
  before(async () => {
    w = await World.create();
    const srv = await w.spawnReady(w.world, ['python3', '-u', '-c', SERVER, HOSTS.api4, String(PORT)]);
    srv.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  });
  after(async () => {
    await w.sluice(['off']);
    await w?.destroy();
  });
  beforeEach(() => {
    out = '';
  });

  const run = async (policy: string, bytes: number) => {
    const file = w.policy(policy, `p-${Math.random().toString(16).slice(2)}.yaml`);
    const a = await w.sluice(['apply', file]);
    assert.equal(a.code, 0, a.stderr);
    const before = await w.nft(['list', 'counter', 'inet', 'sluice', 'default']);
    const r = await w.exec(['python3', '-u', '-c', CLIENT, HOSTS.api4, String(PORT), String(bytes)], { uid: 65534 });
    assert.equal(r.code, 0, r.stderr);
    for (let i = 0; i < 80 && !/eof|err/.test(out); i++) await sleep(100);
    await sleep(500);
    const afterC = await w.nft(['list', 'counter', 'inet', 'sluice', 'default']);
    const pk = (s: string) => Number(/packets (\d+)/.exec(s)?.[1] ?? -1);
    return { server: out.trim(), defaultPackets: pk(afterC) - pk(before) };
  };

  it('control: a rule without users lets every byte through', async () => {
    const r = await run(`mode: enforce\nrules:\n  - name: up\n    to: [${HOSTS.api4}]\n    ports: [${PORT}/tcp]\n`, 2_000_000);
    assert.match(r.server, /eof 2000000/);
    assert.equal(r.defaultPackets, 0);
  });

  it('users: [65534]: the bytes still queued at close() leave from an orphaned socket (no skuid)', async () => {
    const r = await run(`mode: enforce\nrules:\n  - name: up\n    users: [65534]\n    to: [${HOSTS.api4}]\n    ports: [${PORT}/tcp]\n`, 2_000_000);
    assert.match(r.server, /eof 2000000/, `the server got everything: ${r.server}`);
    assert.equal(r.defaultPackets, 0, 'no packet of the allowed flow reached the default rule');
  });

  it('users: [65534], a small request: the FIN/ACK exchange after close() is not refused', async () => {
    const r = await run(`mode: enforce\nrules:\n  - name: up\n    users: [65534]\n    to: [${HOSTS.api4}]\n    ports: [${PORT}/tcp]\n`, 10);
    assert.match(r.server, /eof 10/);
    assert.equal(r.defaultPackets, 0, 'no packet of the allowed flow reached the default rule');
  });
});
