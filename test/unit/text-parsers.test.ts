/**
 * The small text parsers that take input from outside the policy file:
 * `--since` (the command line), /etc/resolv.conf (whoever manages the host's
 * resolver: DHCP, NetworkManager, a container runtime), and the encrypted-DNS
 * list (shipped, or a file the policy names). Each is tried with tables of
 * tricky inputs and fuzzed: it either accepts and means exactly what the text
 * says, or refuses with a clear error; it never throws anything else.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { PolicyError, UsageError } from '../../src/errors.js';
import { parseSince } from '../../src/events/time-window.js';
import { formatAddr } from '../../src/net/ip.js';
import { parseEncryptedDnsList } from '../../src/policy/encrypted-dns-list.js';
import { resolvConfUpstreams } from '../../src/system/resolv-conf.js';
import { runs } from './support/arbitraries.js';

const NOW = Date.parse('2026-12-04T12:00:00Z');

describe('unit: --since', () => {
  it('durations count back from now, in every unit', () => {
    const cases: [string, number][] = [
      ['0s', 0],
      ['90s', 90_000],
      ['15m', 900_000],
      ['1h', 3_600_000],
      [' 7d ', 7 * 86_400_000],
      ['2w', 14 * 86_400_000],
    ];
    for (const [text, back] of cases) assert.equal(parseSince(text, NOW), NOW - back, text);
  });

  it('absolute times: date only, date and time, with or without seconds, fractions and zones; no zone is UTC', () => {
    const cases: [string, string][] = [
      ['2026-12-04', '2026-12-04T00:00:00.000Z'],
      ['2026-12-04T10:00', '2026-12-04T10:00:00.000Z'],
      ['2026-12-04 10:00:30', '2026-12-04T10:00:30.000Z'],
      ['2026-12-04T10:00:30.25Z', '2026-12-04T10:00:30.250Z'],
      ['2026-12-04T10:00+01:00', '2026-12-04T09:00:00.000Z'],
      ['2026-12-04T10:00-0530', '2026-12-04T15:30:00.000Z'],
      ['2024-02-29', '2024-02-29T00:00:00.000Z'],
      ['2026-12-04t10:00z', '2026-12-04T10:00:00.000Z'],
    ];
    for (const [text, iso] of cases) assert.equal(new Date(parseSince(text, NOW)).toISOString(), iso, text);
  });

  it('refuses what Date.parse would guess at: trailing text, impossible dates and times, bad zones, other words', () => {
    for (const bad of [
      '2026-12-04junk', // Date.parse gives 12 June 2026
      '2026-02-30', // Date.parse gives 2 March
      '2025-02-29',
      '2026-13-01',
      '2026-00-10',
      '2026-12-00',
      '2026-12-04T24:00',
      '2026-12-04T10:60',
      '2026-12-04T10:00:60',
      '2026-12-04T10:00+25:00',
      '2026-12-04T10:00+01:61',
      '2026-12-04T10',
      '26-12-04',
      '1h30m',
      '-1h',
      '1y',
      '1H',
      '',
      'yesterday',
      '1e3s',
      '0x10s',
      '1234567890s',
    ]) {
      assert.throws(() => parseSince(bad, NOW), UsageError, bad);
    }
  });

  it('a start before 1970 means the beginning; years 0-99 are not read as 1900-1999', () => {
    assert.equal(parseSince('999999999w', NOW), 0, 'no Invalid Date further down (stats prints it as ISO)');
    assert.equal(parseSince('0001-01-01', NOW), 0);
    assert.equal(parseSince('0099-06-01', NOW), 0, 'not 1999');
    assert.equal(parseSince('1969-12-31T23:59:59Z', NOW), 0);
    assert.equal(parseSince('1970-01-01T00:00:01Z', NOW), 1000);
  });

  it('property: any instant written as ISO (UTC or with an offset) reads back as that instant', () => {
    const instant = fc.integer({ min: 0, max: Date.parse('2999-12-31T23:59:59Z') });
    const offset = fc.integer({ min: -23 * 60 - 59, max: 23 * 60 + 59 });
    fc.assert(
      fc.property(instant, offset, fc.boolean(), (ms, off, colon) => {
        const local = new Date(ms + off * 60_000).toISOString().slice(0, 23); // wall time in that zone
        const sign = off < 0 ? '-' : '+';
        const a = Math.abs(off);
        const zone = `${sign}${String(Math.floor(a / 60)).padStart(2, '0')}${colon ? ':' : ''}${String(a % 60).padStart(2, '0')}`;
        assert.equal(parseSince(`${local}${zone}`, NOW), ms);
        assert.equal(parseSince(`${new Date(ms).toISOString()}`, NOW), ms);
      }),
      runs(500),
    );
  });

  it('property: any text gives a time at or after 1970, or a UsageError', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.stringMatching(/^[0-9T:+\-. Zsmhdw]{0,30}$/)), (text) => {
        try {
          const t = parseSince(text, NOW);
          assert.ok(Number.isInteger(t) && t >= 0, `${JSON.stringify(text)} -> ${t}`);
          assert.doesNotThrow(() => new Date(t).toISOString());
        } catch (err) {
          assert.ok(err instanceof UsageError, `${JSON.stringify(text)}: ${String(err)}`);
        }
      }),
      runs(2000),
    );
  });
});

const addrs = (text: string, opts?: { loopback?: boolean }) => resolvConfUpstreams(text, opts).map((r) => formatAddr(r.family, r.start));

describe('unit: /etc/resolv.conf, read as glibc reads it', () => {
  it('nameserver lines in order, duplicates once, IPv4 and IPv6', () => {
    assert.deepEqual(addrs('nameserver 198.18.0.53\nnameserver 2001:db8::53\nnameserver 198.18.0.53\n'), ['198.18.0.53', '2001:db8::53']);
  });

  it('only the first three nameservers count (MAXNS), as for every program on the host', () => {
    const text = ['198.18.0.1', '198.18.0.2', '198.18.0.3', '198.18.0.4'].map((a) => `nameserver ${a}`).join('\n');
    assert.deepEqual(addrs(text), ['198.18.0.1', '198.18.0.2', '198.18.0.3']);
  });

  it('loopback stubs are skipped unless asked for, and still count among the three', () => {
    const text = 'nameserver 127.0.0.53\nnameserver ::1\nnameserver 198.18.0.1\nnameserver 198.18.0.2\n';
    assert.deepEqual(addrs(text), ['198.18.0.1'], 'the fourth line is one glibc never asks');
    assert.deepEqual(addrs(text, { loopback: true }), ['127.0.0.53', '::1', '198.18.0.1']);
  });

  it('comments, trailing words, tabs and CRLF; lines glibc ignores are ignored', () => {
    const text = [
      '# nameserver 198.18.9.9',
      '; nameserver 198.18.9.8',
      ' nameserver 198.18.9.7', // glibc matches the keyword at the start of the line only
      'nameserver198.18.9.6',
      'nameservers 198.18.9.5',
      'search example.com',
      'options ndots:2 timeout:1',
      'nameserver\t198.18.0.1\r',
      'nameserver 198.18.0.2 # the second',
      'nameserver 198.18.0.3;third',
    ].join('\n');
    assert.deepEqual(addrs(text), ['198.18.0.1', '198.18.0.2', '198.18.0.3']);
  });

  it('an unparsable address is skipped without taking a place; a zone id takes a place but is not used', () => {
    assert.deepEqual(addrs('nameserver resolver.example\nnameserver 198.18.0.300\nnameserver 198.18.0.1\n'), ['198.18.0.1']);
    const zoned = 'nameserver fe80::1%eth0\nnameserver 198.18.0.1\nnameserver 198.18.0.2\nnameserver 198.18.0.3\n';
    assert.deepEqual(addrs(zoned), ['198.18.0.1', '198.18.0.2']);
  });

  it('an empty or missing file gives no upstream (the compiler warns: allowed names would get SERVFAIL)', () => {
    assert.deepEqual(addrs(''), []);
    assert.deepEqual(addrs('\n\n# nothing\n'), []);
  });

  it('property: any text gives at most three distinct non-loopback addresses, each written on a nameserver line', () => {
    const line = fc.oneof(
      fc.constantFrom('nameserver 198.18.0.1', 'nameserver 2001:db8::1', 'nameserver 127.0.0.1', 'nameserver fe80::1%lo', 'nameserver', '#', 'search a'),
      fc.string({ maxLength: 40 }),
      fc.string({ maxLength: 30 }).map((s) => `nameserver ${s}`),
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 12 }), (lines) => {
        const text = lines.join('\n');
        const out = resolvConfUpstreams(text);
        assert.ok(out.length <= 3);
        assert.equal(new Set(out.map((r) => `${r.family}/${r.start}`)).size, out.length);
        for (const r of out) assert.ok(lines.some((l) => l.startsWith('nameserver') && l.includes(formatAddr(r.family, r.start).split(':')[0] as string)));
      }),
      runs(1000),
    );
  });
});

describe('unit: the encrypted DNS list', () => {
  it('addresses and names, comments and blank lines, CRLF', () => {
    const list = parseEncryptedDnsList('# DoH\n198.18.0.1\r\n  2001:db8::1  # v6\n\ndns.example\nDoH.Example.\n', 'list.txt');
    assert.deepEqual(list.addrs.map((r) => formatAddr(r.family, r.start)), ['198.18.0.1', '2001:db8::1']);
    assert.deepEqual(list.names, ['dns.example', 'doh.example']);
  });

  it('refuses prefixes, ranges, wildcards and junk, each with its FILE:LINE:COLUMN, all at once', () => {
    const text = 'ok.example\n198.18.0.0/24\n  *.doh.example\n2001:db8::/64\n198.18.0.1-198.18.0.2\nnot a name\n198.18.0.256\n';
    let caught: unknown;
    try {
      parseEncryptedDnsList(text, '/etc/sluice/doh.txt');
    } catch (err) {
      caught = err;
    }
    assert.ok(caught instanceof PolicyError, String(caught));
    const where = caught.issues.map((i) => `${i.file}:${i.line}:${i.column}`);
    assert.deepEqual(where, ['/etc/sluice/doh.txt:2:1', '/etc/sluice/doh.txt:3:3', '/etc/sluice/doh.txt:4:1', '/etc/sluice/doh.txt:5:1', '/etc/sluice/doh.txt:6:1', '/etc/sluice/doh.txt:7:1']);
  });

  it('property: any text is a list whose every entry stands on its own line, or a PolicyError naming lines that exist', () => {
    const line = fc.oneof(fc.constantFrom('198.18.0.1', '2001:db8::1', 'dns.example', '# c', '', '*.x.example', '198.18.0.0/16'), fc.string({ maxLength: 30 }));
    fc.assert(
      fc.property(fc.array(line, { maxLength: 10 }), (lines) => {
        try {
          const list = parseEncryptedDnsList(lines.join('\n'), 'f');
          const words = lines.map((l) => l.replace(/#.*/, '').trim().toLowerCase().replace(/\.$/, ''));
          for (const n of list.names) assert.ok(words.includes(n), n);
          assert.equal(list.addrs.length + list.names.length, words.filter((w) => w !== '').length, 'every line with content is an entry');
        } catch (err) {
          assert.ok(err instanceof PolicyError, String(err));
          for (const i of err.issues) assert.ok(i.line >= 1 && i.line <= lines.length, `line ${i.line}`);
        }
      }),
      runs(1000),
    );
  });
});
