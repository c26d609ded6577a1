/**
 * The user-space half of the attribution probes, without the kernel: the map
 * layouts as the C program writes them (offsets written out here, not taken
 * from the decoder), hostile map contents, and the attributor joining a
 * record to the probes' sender: by the full flow for TCP, by the socket's
 * port for UDP, never across a socket owned by someone else, never naming a
 * later process that got the same pid.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Attributor, type FlowFacts } from '../../src/monitor/attribution.js';
import { decodeExec, decodeSender, encodeFlowKey, EXEC_BYTES, FLOW_KEY_BYTES, CaptureRate, lookupManyBy, ProbeReader, SENDER_BYTES, startTicks, type MapLookup } from '../../src/monitor/kernel-attribution.js';
import { ProcessTable } from '../../src/monitor/process-table.js';

const NETNS = 0x1234_5678_9abcn;
const FLOWS = 11;
const EXECS = 12;
const STATS = 13;

interface SenderFields {
  time?: bigint;
  start: bigint;
  cgroup?: bigint;
  tgid: number;
  pid?: number;
  uid: number;
  gid?: number;
  skUid: number;
  dport: number;
  family: 4 | 6;
  proto: number;
  daddr: number[];
  comm: string;
}

/** struct sender as the probe writes it (native/bpf/attribution.bpf.c). */
function senderBytes(f: SenderFields): Buffer {
  const b = Buffer.alloc(80);
  b.writeBigUInt64LE(f.time ?? 5n, 0);
  b.writeBigUInt64LE(f.start, 8);
  b.writeBigUInt64LE(f.cgroup ?? 1n, 16);
  b.writeUInt32LE(f.tgid, 24);
  b.writeUInt32LE(f.pid ?? f.tgid, 28);
  b.writeUInt32LE(f.uid, 32);
  b.writeUInt32LE(f.gid ?? f.uid, 36);
  b.writeUInt32LE(f.skUid, 40);
  b.writeUInt16LE(f.dport, 44);
  b[46] = f.family;
  b[47] = f.proto;
  Buffer.from(f.daddr).copy(b, 48);
  b.write(f.comm, 64, 15, 'utf8');
  return b;
}

/** struct exec_info as the probe writes it. */
function execBytes(start: bigint, path: string, args: string[], lens?: { path?: number; args?: number }): Buffer {
  const b = Buffer.alloc(800);
  b.writeBigUInt64LE(start, 0);
  b.writeBigUInt64LE(7n, 8);
  b.writeUInt32LE(1, 16);
  b.writeUInt32LE(0, 20);
  const a = Buffer.from(args.map((x) => `${x}\0`).join(''));
  b.writeUInt16LE(lens?.path ?? Buffer.byteLength(path), 24);
  b.writeUInt16LE(lens?.args ?? a.length, 26);
  b.write(path, 32, 255, 'utf8');
  a.copy(b, 288, 0, Math.min(a.length, 512));
  return b;
}

/** struct flow_key as the probe writes it. */
function keyBytes(family: 4 | 6, proto: number, sport: number, dport: number, daddr: number[]): Buffer {
  const b = Buffer.alloc(32);
  b.writeBigUInt64LE(NETNS, 0);
  b[8] = family;
  b[9] = proto;
  b.writeUInt16LE(sport, 10);
  b.writeUInt16LE(dport, 12);
  Buffer.from(daddr).copy(b, 16);
  return b;
}

/** Maps as a test fills them, behind the same lookup the native call answers. */
function fakeMaps(): { flows: Map<string, Buffer>; execs: Map<number, Buffer>; lookup: MapLookup; asked: number[] } {
  const flows = new Map<string, Buffer>();
  const execs = new Map<number, Buffer>();
  const asked: number[] = [];
  const lookup: MapLookup = (fd, key, size) => {
    asked.push(fd);
    if (fd === FLOWS) {
      assert.equal(key.length, FLOW_KEY_BYTES);
      assert.equal(size, SENDER_BYTES);
      return flows.get(key.toString('hex')) ?? null;
    }
    if (fd === EXECS) {
      assert.equal(size, EXEC_BYTES);
      return execs.get(key.readUInt32LE(0)) ?? null;
    }
    if (fd === STATS) {
      const b = Buffer.alloc(size);
      for (let c = 0; c < size / 8; c++) b.writeBigUInt64LE(BigInt(key.readUInt32LE(0) + 1), c * 8);
      return b;
    }
    throw new Error(`unknown fd ${fd}`);
  };
  return { flows, execs, lookup, asked };
}

describe('unit: the probe map layouts', () => {
  it('a TCP key names the full flow; a UDP key only the socket (its port)', () => {
    const tcp = encodeFlowKey({ netns: NETNS, family: 4, proto: 6, sport: 40000, dport: 443, dst: 0xc612010an });
    assert.deepEqual(tcp, keyBytes(4, 6, 40000, 443, [198, 18, 1, 10]));
    const tcp6 = encodeFlowKey({ netns: NETNS, family: 6, proto: 6, sport: 1, dport: 65535, dst: 0x20010db8000000000000000000000001n });
    assert.deepEqual(tcp6, keyBytes(6, 6, 1, 65535, [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]));
    const udp = encodeFlowKey({ netns: NETNS, family: 4, proto: 17, sport: 5353, dport: 53, dst: 0xc6120035n });
    assert.deepEqual(udp, keyBytes(4, 17, 5353, 0, []), 'UDP: no destination in the key');
  });

  it('a sender decodes field by field, IPv4 and IPv6', () => {
    const s = decodeSender(senderBytes({ time: 99n, start: 123456789n, cgroup: 0x1_0000_0002n, tgid: 4242, pid: 4243, uid: 1000, gid: 100, skUid: 0, dport: 443, family: 4, proto: 6, daddr: [198, 18, 1, 10], comm: 'curl' }));
    assert.deepEqual(s, { time: 99n, start: 123456789n, cgroupId: 0x1_0000_0002n, tgid: 4242, pid: 4243, uid: 1000, gid: 100, skUid: 0, family: 4, proto: 6, dport: 443, dst: 0xc612010an, comm: 'curl' });
    const s6 = decodeSender(senderBytes({ start: 1n, tgid: 1, uid: 0, skUid: 0, dport: 53, family: 6, proto: 17, daddr: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x35], comm: 'dig' }));
    assert.equal(s6.dst, 0x20010db8000000000000000000000035n);
    assert.equal(s6.family, 6);
  });

  it('hostile contents: a short value is refused, a comm with escapes is cleaned, an unknown family is 0', () => {
    assert.throws(() => decodeSender(Buffer.alloc(79)), RangeError);
    assert.throws(() => decodeExec(Buffer.alloc(799)), RangeError);
    const b = senderBytes({ start: 1n, tgid: 1, uid: 0, skUid: 0, dport: 0, family: 4, proto: 6, daddr: [], comm: 'x\u001b[2Jy' });
    b[46] = 9;
    const s = decodeSender(b);
    assert.equal(s.comm, 'x?[2Jy');
    assert.equal(s.family, 0);
    const full = Buffer.alloc(80, 0x41); // no NUL anywhere in comm
    assert.equal(decodeSender(full).comm, 'A'.repeat(16));
  });

  it('an exec record gives the path and the command line as /proc would, with lengths bounded by the buffers', () => {
    const e = decodeExec(execBytes(77n, '/usr/bin/curl', ['curl', '-s', 'http://198.18.1.10/']));
    assert.equal(e.path, '/usr/bin/curl');
    assert.equal(e.cmdline, 'curl -s http://198.18.1.10/');
    assert.equal(e.start, 77n);
    // Lengths the buffers cannot hold are clamped, never read past.
    const over = decodeExec(execBytes(1n, '/bin/sh', ['sh', '-c', 'x'], { path: 60000, args: 60000 }));
    assert.equal(over.path, '/bin/sh');
    assert.equal(over.cmdline, 'sh -c x');
    const escaped = decodeExec(execBytes(1n, '/tmp/\u001bevil', ['a\nb']));
    assert.equal(escaped.path, '/tmp/?evil');
    assert.equal(escaped.cmdline, 'a?b');
  });

  it('start times convert to /proc/PID/stat ticks (USER_HZ 100)', () => {
    assert.equal(startTicks(12_340_000_000n), 1234);
    assert.equal(startTicks(12_349_999_999n), 1234);
  });

  it('the probes\' per-CPU counters are summed', () => {
    const m = fakeMaps();
    const r = new ProbeReader({ flows: FLOWS, execs: EXECS, stats: STATS, cpus: 3 }, m.lookup);
    assert.deepEqual(r.probeStats(), { captured: 3, unchanged: 6, execs: 9, argsUnread: 12, connectUnknown: 15 });
  });
});

/** A /proc with one live process (pid 4100, uid 33, started at tick 5100). */
function fakeProc(): string {
  const root = mkdtempSync(join(tmpdir(), 'sluice-kproc-'));
  const netns = (dir: string) => {
    mkdirSync(join(dir, 'ns'), { recursive: true });
    symlinkSync('net:[4026532999]', join(dir, 'ns/net'));
  };
  netns(join(root, 'self'));
  const dir = join(root, '4100');
  mkdirSync(dir);
  netns(dir);
  writeFileSync(join(dir, 'stat'), '4100 (daemon) S 1 4100 4100 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 5100 0 0');
  writeFileSync(join(dir, 'status'), 'Name:\tdaemon\nUid:\t33\t33\t33\t33\nGid:\t33\t33\t33\t33\n');
  writeFileSync(join(dir, 'cgroup'), '0::/system.slice/web.service\n');
  writeFileSync(join(dir, 'cmdline'), 'daemon\0--serve\0');
  symlinkSync('/usr/sbin/daemon', join(dir, 'exe'));
  return root;
}

function facts(extra: Partial<FlowFacts> = {}): FlowFacts {
  return { time: Date.now(), verdict: 'blocked', rule: '#default', family: 4, proto: 6, src: 0xc6120002n, dst: 0xc612010an, sport: 40000, dport: 443, uid: 0, ...extra };
}

describe('unit: the attributor joins records to the probes\' senders', () => {
  const proc = fakeProc();
  after(() => rmSync(proc, { recursive: true, force: true }));
  const setup = () => {
    const m = fakeMaps();
    const reader = new ProbeReader({ flows: FLOWS, execs: EXECS, stats: STATS, cpus: 1 }, m.lookup);
    const a = new Attributor({ procs: new ProcessTable({ procRoot: proc, exclude: [] }), kernel: { reader, netns: NETNS }, userName: (u) => (u === 1000 ? 'alice' : undefined), socketMayExist: () => false });
    a.beginBatch();
    return { m, reader, a };
  };

  it('a one-shot TCP connect whose process is gone: named by the probe, with the executable and command line of its exec', () => {
    const { m, a } = setup();
    m.flows.set(keyBytes(4, 6, 40000, 443, [198, 18, 1, 10]).toString('hex'), senderBytes({ start: 9_000_000_000n, tgid: 777, uid: 1000, skUid: 1000, dport: 443, family: 4, proto: 6, daddr: [198, 18, 1, 10], comm: 'curl' }));
    m.execs.set(777, execBytes(9_000_000_000n, '/usr/bin/curl', ['curl', 'https://198.18.1.10/']));
    const e = a.attribute(facts({ uid: 1000 }));
    assert.equal(e.attribution, 'kernel');
    assert.deepEqual(e.process, { pid: 777, comm: 'curl', exe: '/usr/bin/curl', cmdline: 'curl https://198.18.1.10/' });
    assert.equal(e.uid, 1000);
    assert.equal(e.user, 'alice');
    assert.equal(a.stats.kernel, 1);
  });

  it('the user is the sender\'s, not the socket owner\'s: a socket made by root and used after dropping to uid 1000', () => {
    const { m, a } = setup();
    m.flows.set(keyBytes(4, 17, 5000, 0, []).toString('hex'), senderBytes({ start: 1n, tgid: 778, uid: 1000, skUid: 0, dport: 53, family: 4, proto: 17, daddr: [198, 18, 0, 53], comm: 'dropper' }));
    const e = a.attribute(facts({ proto: 17, sport: 5000, dport: 9999, uid: 0 }));
    assert.equal(e.attribution, 'kernel', 'UDP joins by the socket, whatever the last destination');
    assert.equal(e.uid, 1000);
    assert.equal(e.process?.pid, 778);
  });

  it('a TCP record to another destination from the same port is not joined (ports are shared across destinations)', () => {
    const { m, a, reader } = setup();
    m.flows.set(keyBytes(4, 6, 40000, 443, [198, 18, 1, 10]).toString('hex'), senderBytes({ start: 1n, tgid: 779, uid: 0, skUid: 0, dport: 443, family: 4, proto: 6, daddr: [198, 18, 1, 10], comm: 'x' }));
    const e = a.attribute(facts({ dst: 0xc612010bn }));
    assert.notEqual(e.attribution, 'kernel');
    assert.equal(reader.stats.misses, 1);
  });

  it('a record whose socket owner is not the recorded socket\'s (a shared UDP port) is not joined', () => {
    const { m, a, reader } = setup();
    m.flows.set(keyBytes(4, 17, 5353, 0, []).toString('hex'), senderBytes({ start: 1n, tgid: 780, uid: 65534, skUid: 65534, dport: 53, family: 4, proto: 17, daddr: [], comm: 'squatter' }));
    const e = a.attribute(facts({ proto: 17, sport: 5353, dport: 53, uid: 0 }));
    assert.notEqual(e.process?.pid, 780, 'root\'s record is never framed on uid 65534\'s socket');
    assert.equal(reader.stats.mismatched, 1);
  });

  it('a live process is read from /proc; a later process with the same pid is not taken for the sender', () => {
    const { m, a } = setup();
    // pid 4100 is alive in the fake /proc, started at tick 5100.
    m.flows.set(keyBytes(4, 6, 40001, 443, [198, 18, 1, 10]).toString('hex'), senderBytes({ start: 51_000_000_000n, tgid: 4100, uid: 33, skUid: 33, dport: 443, family: 4, proto: 6, daddr: [198, 18, 1, 10], comm: 'daemon' }));
    const live = a.attribute(facts({ sport: 40001, uid: 33 }));
    assert.equal(live.process?.exe, '/usr/sbin/daemon', 'no exec record (started before the probes): /proc');
    assert.equal(live.process?.cmdline, 'daemon --serve');
    // The sender was an earlier process 4100 (another start): neither /proc's nor a mismatched exec record names it.
    m.flows.set(keyBytes(4, 6, 40002, 443, [198, 18, 1, 10]).toString('hex'), senderBytes({ start: 42_000_000_000n, tgid: 4100, uid: 33, skUid: 33, dport: 443, family: 4, proto: 6, daddr: [198, 18, 1, 10], comm: 'old' }));
    m.execs.set(4100, execBytes(51_000_000_000n, '/usr/sbin/daemon', ['daemon']));
    const earlier = a.attribute(facts({ sport: 40002, uid: 33 }));
    assert.equal(earlier.attribution, 'kernel');
    assert.deepEqual(earlier.process, { pid: 4100, comm: 'old' }, 'pid and comm as captured; no executable of a later process');
    // The exec record wins over a table entry read before that exec (nsenter, then the shell it started).
    const now = a.attribute(facts({ sport: 40001, uid: 33 }));
    assert.equal(now.process?.exe, '/usr/sbin/daemon');
    assert.equal(now.process?.cmdline, 'daemon', 'from the exec record, not /proc\'s "daemon --serve"');
  });

  it('without the probes (or on a miss) the socket-table methods run as before', () => {
    const { a, reader } = setup();
    const e = a.attribute(facts({ sport: 41000, uid: 33 }));
    assert.equal(e.attribution, 'user', 'the only process of uid 33');
    assert.equal(reader.stats.misses, 1);
    const plain = new Attributor({ procs: new ProcessTable({ procRoot: proc, exclude: [] }), socketMayExist: () => false });
    plain.beginBatch();
    assert.equal(plain.attribute(facts({ sport: 41000, uid: 33 })).attribution, 'user');
  });

  it('a UDP record read before its send\'s probe record waits once for it (attributeOrWait), then is joined', async () => {
    const { m, a, reader } = setup();
    const pending = a.attributeOrWait(facts({ proto: 17, sport: 6000, dport: 53, uid: 0 }));
    assert.ok(pending instanceof Promise, 'not found yet: it waits');
    m.flows.set(keyBytes(4, 17, 6000, 0, []).toString('hex'), senderBytes({ start: 1n, tgid: 781, uid: 0, skUid: 0, dport: 0, family: 4, proto: 17, daddr: [], comm: 'late' }));
    const e = await pending;
    assert.equal(e.attribution, 'kernel');
    assert.equal(e.process?.pid, 781);
    assert.equal(reader.stats.misses, 1);
    // An old record does not wait (its send is long done), nor does attribute().
    assert.ok(!(a.attributeOrWait(facts({ proto: 17, sport: 6001, uid: 0, time: Date.now() - 5000 })) instanceof Promise));
  });

  it('a batch is looked up in one call: every record of it, UDP records of one socket once, and attribution reads from there', () => {
    const m = fakeMaps();
    let calls = 0;
    let keysAsked = 0;
    const many = lookupManyBy(m.lookup);
    const reader = new ProbeReader({ flows: FLOWS, execs: EXECS, stats: STATS, cpus: 1 }, m.lookup, (fd, keys, ks, vs) => {
      calls++;
      keysAsked += keys.length / ks;
      return many(fd, keys, ks, vs);
    });
    const a = new Attributor({ procs: new ProcessTable({ procRoot: proc, exclude: [] }), kernel: { reader, netns: NETNS }, socketMayExist: () => false });
    m.flows.set(keyBytes(4, 6, 40000, 443, [198, 18, 1, 10]).toString('hex'), senderBytes({ start: 1n, tgid: 790, uid: 0, skUid: 0, dport: 443, family: 4, proto: 6, daddr: [198, 18, 1, 10], comm: 'tcp' }));
    m.flows.set(keyBytes(4, 17, 7000, 0, []).toString('hex'), senderBytes({ start: 1n, tgid: 791, uid: 0, skUid: 0, dport: 53, family: 4, proto: 17, daddr: [], comm: 'udp' }));
    const batch = [facts(), facts({ proto: 17, sport: 7000, dport: 1 }), facts({ proto: 17, sport: 7000, dport: 2 }), facts({ proto: 17, sport: 7000, dport: 3 }), facts({ sport: 40009 }), { ...facts(), proto: 1, sport: undefined, dport: undefined }];
    a.beginBatch();
    a.prefetch(batch);
    assert.equal(calls, 1);
    assert.equal(keysAsked, 3, 'the TCP flow, the UDP socket once, the unknown TCP flow; not the ICMP record');
    m.asked.length = 0;
    const out = batch.map((f) => a.attribute(f));
    assert.deepEqual(out.map((e) => e.process?.pid), [790, 791, 791, 791, undefined, undefined]);
    assert.deepEqual(m.asked.filter((fd) => fd === FLOWS), [], 'no lookup per record after the batch\'s');
    assert.equal(reader.stats.lookups, 3);
    assert.equal(reader.stats.hits, 2);
    assert.equal(reader.stats.misses, 1);
    // The next batch forgets them: a record is looked up again.
    a.beginBatch();
    a.attribute(facts());
    assert.deepEqual(m.asked.filter((fd) => fd === FLOWS), [FLOWS]);
  });

  it('the batch call\'s statuses: found, absent, and an error counted as such', () => {
    const m = fakeMaps();
    const reader = new ProbeReader({ flows: FLOWS, execs: EXECS, stats: STATS, cpus: 1 }, m.lookup, (_fd, keys, ks, vs) => {
      const n = keys.length / ks;
      const out = Buffer.alloc(n + n * vs);
      out[0] = 1;
      senderBytes({ start: 1n, tgid: 800, uid: 0, skUid: 0, dport: 1, family: 4, proto: 6, daddr: [198, 18, 1, 1], comm: 'a' }).copy(out, n);
      out[1] = 0;
      out[2] = 2;
      return out;
    });
    const k = { netns: NETNS, family: 4 as const, proto: 6, sport: 1, dport: 1, dst: 1n };
    const got = reader.senders([k, k, k]);
    assert.deepEqual(got.map((s) => s?.tgid), [800, undefined, undefined]);
    assert.deepEqual({ h: reader.stats.hits, m: reader.stats.misses, e: reader.stats.errors }, { h: 1, m: 1, e: 1 });
    const failing = new ProbeReader({ flows: FLOWS, execs: EXECS, stats: STATS, cpus: 1 }, m.lookup, () => {
      throw new Error('EBADF');
    });
    assert.deepEqual(failing.senders([k, k]), [undefined, undefined]);
    assert.equal(failing.stats.errors, 2);
  });

  it('ICMP and records without ports are not looked up', () => {
    const { a, m } = setup();
    a.attribute({ time: Date.now(), verdict: 'blocked', rule: '#default', family: 4, proto: 1, src: 1n, dst: 2n, uid: 0 });
    assert.deepEqual(m.asked, []);
  });
});

describe('unit: the flow map\'s turnover', () => {
  it('capture rate over the last minute, and how long a record lasts at that rate', () => {
    const r = new CaptureRate(60_000);
    assert.equal(r.perSecond(), undefined);
    assert.equal(r.turnoverSeconds(65_536), null, 'not known yet');
    r.add(0, 1000);
    r.add(10_000, 1000);
    assert.equal(r.perSecond(), 0);
    assert.equal(r.turnoverSeconds(65_536), null, 'nothing captured: no pressure');
    r.add(20_000, 21_000);
    assert.equal(r.perSecond(), 1000, '20,000 captures in 20 s');
    assert.equal(r.turnoverSeconds(65_536), 65.536);
    // Older readings leave the window: the rate is the last minute's, not the run's.
    for (let t = 30_000; t <= 200_000; t += 10_000) r.add(t, 21_000 + (t - 20_000) * 10);
    assert.equal(r.perSecond(), 10_000);
    r.add(150_000, 0);
    assert.equal(r.perSecond(), 10_000, 'a reading out of order is ignored');
  });
});
