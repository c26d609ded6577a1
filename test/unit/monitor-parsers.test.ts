/** /proc files, sock_diag and ctnetlink replies, and NFLOG prefixes are hostile input: exact parses, and fuzzing never throws unexpectedly. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { baseEvent } from '../../src/monitor/attribution.js';
import { encodeCtDelete, parseCtMessage, redirectedTo } from '../../src/netfilter/conntrack.js';
import { parseLogPrefix } from '../../src/compile/kernel-names.js';
import { recordFacts } from '../../src/monitor/collector.js';
import { cleanText, parseCgroupFile, parseCmdline, parseNsLink, parseSocketLink, parseStat, parseStatus } from '../../src/monitor/proc-parse.js';
import { findSocket, parseSockDiagMessage, type SockEntry } from '../../src/monitor/sock-diag.js';
import { MalformedNetlink, NlWriter, parseMessages } from '../../src/netfilter/nl-attr.js';
import type { NflogRecord } from '../../src/netfilter/nflog.js';

const STATUS = 'Name:\tcurl\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1000\t1000\t1000\t1001\nGid:\t100\t100\t100\t100\n';

function sockDiagMsg(opts: { family?: number; sport?: number; dport?: number; src?: number[]; dst?: number[]; uid?: number; inode?: number; cgroup?: bigint; state?: number } = {}): Buffer {
  const p = Buffer.alloc(72);
  p.writeUInt8(opts.family ?? 2, 0);
  p.writeUInt8(opts.state ?? 2, 1);
  p.writeUInt16BE(opts.sport ?? 40000, 4);
  p.writeUInt16BE(opts.dport ?? 443, 6);
  Buffer.from(opts.src ?? [198, 18, 0, 2]).copy(p, 8);
  Buffer.from(opts.dst ?? [198, 18, 1, 10]).copy(p, 24);
  p.writeUInt32LE(opts.uid ?? 65534, 64);
  p.writeUInt32LE(opts.inode ?? 777, 68);
  const w = new NlWriter();
  w.beginRaw(20, 2, 1, p);
  if (opts.cgroup !== undefined) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(opts.cgroup);
    w.bytes(21, b);
  }
  w.endMsg();
  return w.finish();
}

function ctMsg(): Buffer {
  const w = new NlWriter();
  w.beginMsg((1 << 8) | 0, 2, 1, 2);
  w.nest(1, () => {
    w.nest(1, () => {
      w.bytes(1, Buffer.from([198, 18, 0, 2]));
      w.bytes(2, Buffer.from([198, 18, 1, 10]));
    });
    w.nest(2, () => {
      w.u8(1, 6);
      w.u16be(2, 40000);
      w.u16be(3, 443);
    });
  });
  w.nest(4, () => w.nest(1, () => w.u8(1, 3)));
  w.u32be(8, 7);
  w.nest(20, () => w.u64be(1, 1_700_000_000_000_000_000n));
  w.endMsg();
  return w.finish();
}

describe('unit: /proc parsers', () => {
  it('status: real, effective and filesystem uid, and gid', () => {
    assert.deepEqual(parseStatus(STATUS), { uid: 1000, euid: 1000, fsuid: 1001, gid: 100 });
    assert.equal(parseStatus('Uid:\t1\n'), null);
    assert.equal(parseStatus(''), null);
  });

  it('stat: a comm with spaces and parentheses is cut at the last parenthesis', () => {
    const rest = 'S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20';
    assert.deepEqual(parseStat(`42 (a) b (c)) ${rest}`), { comm: 'a) b (c)', ppid: 1, startTicks: 987654 });
    assert.equal(parseStat('42 no parens'), null);
    assert.equal(parseStat('42 (x) S'), null);
    assert.equal(parseStat('42 (evil\x1b[2J) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 5')?.comm, 'evil?[2J', 'terminal escapes are neutralised');
  });

  it('cgroup, cmdline, fd and namespace links, units', () => {
    assert.equal(parseCgroupFile('12:pids:/x\n0::/system.slice/nginx.service\n'), '/system.slice/nginx.service');
    assert.equal(parseCgroupFile('1:cpu:/\n'), null);
    assert.equal(parseCmdline(Buffer.from('curl\0-s\0https://x\0')), 'curl -s https://x');
    assert.equal(parseCmdline(Buffer.from('a\nb\0')), 'a?b');
    assert.equal(parseCmdline(Buffer.alloc(0)), '');
    assert.equal(parseCmdline(Buffer.alloc(100_000, 0x41)).length, 4096);
    assert.equal(parseSocketLink('socket:[12345]'), 12345);
    assert.equal(parseSocketLink('pipe:[12345]'), null);
    assert.equal(parseSocketLink('/dev/null'), null);
    assert.equal(parseNsLink('net:[4026531840]'), 4026531840);
    assert.equal(cleanText('ok\u0007\u009b', 10), 'ok??');
  });

  it('property: no /proc parser throws on arbitrary text or bytes', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), fc.uint8Array({ maxLength: 300 }), (s, b) => {
        parseStatus(s);
        parseStat(s);
        parseCgroupFile(s);
        parseSocketLink(s);
        parseNsLink(s);
        const c = parseCmdline(b);
        assert.ok(c.length <= 4096);
        assert.ok(!/[\u0000-\u001f]/.test(c));
        const st = parseStat(`1 (${s}) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 5`);
        if (st) assert.ok(!/[\u0000-\u001f]/.test(st.comm));
      }),
      { numRuns: 3000 },
    );
  });
});

describe('unit: sock_diag and conntrack replies', () => {
  it('parses a socket: addresses, ports, uid, inode, cgroup', () => {
    const [m] = parseMessages(sockDiagMsg({ cgroup: 4242n }));
    const e = parseSockDiagMessage(m as never, 6);
    assert.equal(e.family, 4);
    assert.equal(e.src, 0xc6120002n);
    assert.equal(e.dst, 0xc612010an);
    assert.deepEqual([e.sport, e.dport, e.uid, e.inode, e.cgroupId, e.state], [40000, 443, 65534, 777, 4242n, 2]);
  });

  it('a dual-stack socket carrying IPv4 is reported as IPv4', () => {
    const mapped = (a: number[]) => [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...a];
    const [m] = parseMessages(sockDiagMsg({ family: 10, src: mapped([198, 18, 0, 2]), dst: mapped([198, 18, 1, 10]) }));
    const e = parseSockDiagMessage(m as never, 6);
    assert.deepEqual([e.family, e.sockFamily, e.src, e.dst], [4, 6, 0xc6120002n, 0xc612010an]);
  });

  it('findSocket: the exact 4-tuple first, an unconnected UDP socket on the same port second', () => {
    const base: SockEntry = { family: 4, sockFamily: 4, proto: 17, state: 7, src: 0n, sport: 5353, dst: 0n, dport: 0, ifindex: 0, uid: 0, inode: 1 };
    const exact: SockEntry = { ...base, src: 0xc6120002n, dst: 0xc612010an, dport: 53, inode: 2, state: 1 };
    const pkt = { family: 4 as const, src: 0xc6120002n, sport: 5353, dst: 0xc612010an, dport: 53 };
    assert.equal(findSocket([base, exact], pkt)?.inode, 2);
    assert.equal(findSocket([base], pkt)?.inode, 1);
    assert.equal(findSocket([base], { ...pkt, sport: 1 }), undefined);
  });

  it('parses a conntrack entry: tuple, TCP state, mark, start time', () => {
    const [m] = parseMessages(ctMsg());
    const e = parseCtMessage(m as never);
    assert.deepEqual([e.family, e.proto, e.src, e.dst, e.sport, e.dport, e.tcpState, e.mark, e.startMs], [4, 6, 0xc6120002n, 0xc612010an, 40000, 443, 'ESTABLISHED', 7, 1_700_000_000_000]);
  });

  it('property: mutated sock_diag and conntrack replies parse or fail with MalformedNetlink only', () => {
    for (const [base, parse] of [
      [sockDiagMsg({ cgroup: 1n }), (b: Buffer) => parseMessages(b).map((m) => parseSockDiagMessage(m, 6))],
      [ctMsg(), (b: Buffer) => parseMessages(b).map((m) => parseCtMessage(m))],
    ] as const) {
      fc.assert(
        fc.property(fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), fc.nat(base.length), (edits, cut) => {
          const b = Buffer.from(base);
          for (const [at, v] of edits) b[at] = v;
          try {
            parse(b.subarray(0, Math.max(cut, 16)));
          } catch (err) {
            if (!(err instanceof MalformedNetlink)) throw err;
          }
        }),
        { numRuns: 3000 },
      );
    }
  });
});

describe('unit: conntrack deletes for a stale DNS redirect', () => {
  it('a delete request carries the original tuple exactly (both families)', () => {
    for (const t of [
      { family: 4 as const, proto: 17, src: 0xc6120002n, dst: 0xc6120035n, sport: 40153, dport: 53 },
      { family: 6 as const, proto: 6, src: 0x20010db8000000000000000000000002n, dst: 0x20010db8000000000000000000000053n, sport: 1234, dport: 53 },
    ]) {
      const [m] = parseMessages(encodeCtDelete(t));
      assert.ok(m);
      assert.deepEqual({ ...parseCtMessage(m) }, t);
    }
  });

  it('only DNS flows answered from loopback on the redirect port count as redirected there', () => {
    const flow = (reply: { src: bigint; sport: number; family?: 4 | 6 }, dport = 53) => ({
      family: 4 as const,
      proto: 17,
      src: 0xc6120002n,
      dst: 0xc6120035n,
      sport: 40153,
      dport,
      reply: { family: reply.family ?? 4, proto: 17, src: reply.src, dst: 0xc6120002n, sport: reply.sport, dport: 40153 },
    });
    assert.equal(redirectedTo(flow({ src: 0x7f000001n, sport: 153 }), 153), true);
    assert.equal(redirectedTo(flow({ src: 1n, sport: 153, family: 6 }), 153), true, '::1');
    assert.equal(redirectedTo(flow({ src: 0x7f000001n, sport: 153 }), 154), false, 'another port');
    assert.equal(redirectedTo(flow({ src: 0xc6120035n, sport: 53 }), 153), false, 'answered by the real resolver');
    assert.equal(redirectedTo(flow({ src: 0x7f000001n, sport: 153 }, 80), 153), false, 'not DNS');
  });
});

describe('unit: NFLOG prefixes and record facts', () => {
  it('only Sluice prefixes with a valid rule name are accepted', () => {
    assert.deepEqual(parseLogPrefix('sluice:B:api '), { verdict: 'blocked', rule: 'api' });
    assert.deepEqual(parseLogPrefix('sluice:W:#default '), { verdict: 'would-block', rule: '#default' });
    assert.deepEqual(parseLogPrefix('sluice:B:#encrypted-dns '), { verdict: 'blocked', rule: '#encrypted-dns' });
    assert.deepEqual(parseLogPrefix('sluice:A:web.v2_x-1 '), { verdict: 'allowed', rule: 'web.v2_x-1' });
    for (const bad of ['sluice:B:api', 'sluice:X:api ', 'other:B:api ', 'sluice:B: ', 'sluice:B:Api ', 'sluice:B:a b ', `sluice:B:${'a'.repeat(49)} `, 'sluice:B:#other ', 'sluice:B:-a ', 'sluice:D:dns ', '']) {
      assert.equal(parseLogPrefix(bad), null, bad);
    }
  });

  it('baseEvent: what the packet alone says, ICMP type included (the event kept when attribution fails)', () => {
    const e = baseEvent({ time: 5, verdict: 'blocked', rule: 'r', family: 6, proto: 58, src: 1n, dst: 2n, icmpType: 128, uid: 7 });
    assert.deepEqual(e, { time: 5, verdict: 'blocked', rule: 'r', family: 6, proto: 58, src: '::1', dst: '::2', icmpType: 128 });
  });

  it('recordFacts: a blocked encrypted-DNS record is Sluice\'s, not foreign', () => {
    const pkt = { family: 4 as const, proto: 6, src: 1n, dst: 2n, sport: 3, dport: 853, length: 40 };
    const f = recordFacts({ group: 1, prefix: 'sluice:B:#encrypted-dns ', timeMs: 5, packet: pkt, payload: Buffer.alloc(0), uid: 0 });
    assert.ok(typeof f === 'object' && f.rule === '#encrypted-dns' && f.verdict === 'blocked', JSON.stringify(f, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)));
  });

  it('recordFacts: foreign and packet-less records are told apart from good ones', () => {
    const rec = (prefix: string, packet: NflogRecord['packet']): NflogRecord => ({ group: 1, prefix, timeMs: 5, packet, payload: Buffer.alloc(0), uid: 7, outIfindex: 2 });
    const pkt = { family: 4 as const, proto: 6, src: 1n, dst: 2n, sport: 3, dport: 4, length: 40 };
    assert.equal(recordFacts(rec('x', pkt)), 'foreign');
    assert.equal(recordFacts(rec('sluice:B:a ', null)), 'malformed');
    assert.deepEqual(recordFacts(rec('sluice:B:a ', pkt)), { time: 5, verdict: 'blocked', rule: 'a', family: 4, proto: 6, src: 1n, dst: 2n, sport: 3, dport: 4, uid: 7, outIfindex: 2 });
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (prefix) => {
        const f = recordFacts(rec(prefix, pkt));
        if (typeof f !== 'string') assert.ok(prefix.startsWith('sluice:'));
      }),
      { numRuns: 2000 },
    );
  });
});
