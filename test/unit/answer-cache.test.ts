/** The answer cache's structure: LRU order and bound, expiry, countdown, negative TTLs (RFC 2308), invalidation. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { AnswerCache, ageSeconds, cacheKey, countDown, negativeTtl, prepareForCache, wantsPrefetch, type CachedAnswer } from '../../src/dns/answer-cache.js';
import { RCODE, TYPE, type RR } from '../../src/dns/dns-message.js';
import { CNAME, SOA } from '../support/dns-records.js';

const A = (name: string, ttl: number): RR => ({ name, type: TYPE.A, class: 1, ttl, data: { kind: 'a', addr: 0xc6120101n } });

function entry(key: string, expiresAt = Infinity): Omit<CachedAnswer, 'prev' | 'next' | 'uses' | 'prefetching'> {
  return { key, name: key, type: 1, storedAt: 0, expiresAt, rcode: 0, answers: [], authorities: [], addresses: [], names: [key], targets: [], ede: [], ad: false, decided: '' };
}

describe('unit: answer cache structure', () => {
  it('keys fold ASCII case only, and keep type and the DO bit apart', () => {
    assert.equal(cacheKey('API.Example.COM.', 1, false), cacheKey('api.example.com', 1, false));
    assert.notEqual(cacheKey('api.example.com', 1, false), cacheKey('api.example.com', 28, false));
    assert.notEqual(cacheKey('api.example.com', 1, false), cacheKey('api.example.com', 1, true));
    // Presentation form keeps wire differences: a label with a dot is not two labels, and other bytes are escaped, not folded.
    assert.notEqual(cacheKey('a\\.b.example.com', 1, false), cacheKey('a.b.example.com', 1, false));
    assert.notEqual(cacheKey('\\195\\137.example.com', 1, false), cacheKey('\\195\\169.example.com', 1, false));
  });

  it('bounded: the least recently used entry leaves first, and a hit makes an entry the most recent', () => {
    const c = new AnswerCache(3);
    for (const k of ['a', 'b', 'c']) c.set(entry(k));
    assert.ok(c.get('a', 0), 'a is there');
    c.set(entry('d'));
    assert.deepEqual(c.keys(), ['c', 'a', 'd'], 'b, the least recently used, left');
    assert.equal(c.get('b', 0), undefined);
    assert.equal(c.stats.evictions, 1);
    assert.equal(c.size, 3);
    c.capacity = 1;
    assert.deepEqual(c.keys(), ['d']);
    assert.equal(c.stats.evictions, 3);
  });

  it('an entry past its time misses and is removed; hits and misses are counted', () => {
    const c = new AnswerCache(10);
    c.set(entry('a', 1000));
    assert.ok(c.get('a', 1000), 'alive up to and including expiresAt');
    assert.equal(c.get('a', 1001), undefined);
    assert.equal(c.size, 0);
    assert.deepEqual([c.stats.hits, c.stats.misses, c.stats.expired], [1, 1, 1]);
  });

  it('a rejected hit goes and counts as a miss; invalidate removes exactly what it is told to', () => {
    const c = new AnswerCache(10);
    for (const k of ['a', 'b', 'c', 'd']) c.set(entry(k));
    assert.ok(c.get('a', 0));
    c.reject('a');
    assert.deepEqual([c.stats.hits, c.stats.misses, c.size], [0, 1, 3]);
    assert.equal(c.invalidate((e) => e.key === 'b' || e.key === 'd'), 2);
    assert.deepEqual(c.keys(), ['c']);
    assert.equal(c.stats.invalidated, 3);
    c.clear();
    assert.equal(c.size, 0);
    assert.equal(c.get('c', 0), undefined);
  });

  it('size 0 keeps nothing; a bound that is not a whole number above 0 keeps nothing either', () => {
    for (const bound of [0, -1, 1.5, Number.NaN, undefined as unknown as number]) {
      const c = new AnswerCache(bound);
      c.set(entry('a'));
      assert.equal(c.size, 0, String(bound));
    }
  });

  it('prefetch: only a popular entry (handed out twice before) that lives 10 s or more, in the last tenth of its life, once at a time', () => {
    const c = new AnswerCache(10);
    c.set({ ...entry('a', 100_000), storedAt: 0 });
    const e = c.peek('a') as CachedAnswer;
    assert.equal(wantsPrefetch(e, 95_000), false, 'not popular yet');
    e.uses = 2;
    assert.equal(wantsPrefetch(e, 89_999), false, 'not near its end');
    assert.equal(wantsPrefetch(e, 90_000), true);
    e.prefetching = true;
    assert.equal(wantsPrefetch(e, 95_000), false, 'one at a time');
    c.set({ ...entry('b', 9_000), storedAt: 0 });
    const short = c.peek('b') as CachedAnswer;
    short.uses = 5;
    assert.equal(wantsPrefetch(short, 8_500), false, 'short-lived entries just expire');
  });

  it('TTLs count down in whole seconds, rounded up, and never below 0; the cached records stay as they were', () => {
    assert.equal(ageSeconds(1000, 1000), 0);
    assert.equal(ageSeconds(1000, 1001), 1);
    assert.equal(ageSeconds(1000, 2000), 1);
    assert.equal(ageSeconds(1000, 2001), 2);
    const rrs = [A('a.example.com', 60), CNAME('b.example.com', 'a.example.com', 5)];
    assert.deepEqual(countDown(rrs, 7).map((r) => r.ttl), [53, 0]);
    assert.deepEqual(rrs.map((r) => r.ttl), [60, 5]);
  });

  it('positive answers live as long as their shortest TTL; SERVFAIL, REFUSED and a negative answer without an SOA are not cached', () => {
    assert.equal(prepareForCache(TYPE.A, RCODE.NOERROR, [CNAME('x', 'y', 300), A('y', 20)], [], 3600)?.seconds, 20);
    assert.equal(prepareForCache(TYPE.A, RCODE.SERVFAIL, [], [SOA(60, 60)], 3600), null);
    assert.equal(prepareForCache(TYPE.A, RCODE.REFUSED, [A('y', 20)], [], 3600), null);
    assert.equal(prepareForCache(TYPE.A, RCODE.NXDOMAIN, [], [], 3600), null, 'RFC 2308 section 5');
    assert.equal(prepareForCache(TYPE.A, RCODE.NOERROR, [], [], 3600), null, 'NODATA without an SOA');
  });

  it('negative answers (NXDOMAIN, NODATA, a chain ending without the type) live min(SOA TTL, MINIMUM), capped, and the SOA is handed out at that TTL', () => {
    assert.equal(negativeTtl(SOA(300, 60), 3600), 60);
    assert.equal(negativeTtl(SOA(30, 60), 3600), 30);
    assert.equal(negativeTtl(SOA(86400, 86400), 900), 900);
    const nx = prepareForCache(TYPE.A, RCODE.NXDOMAIN, [], [SOA(300, 60)], 3600);
    assert.equal(nx?.seconds, 60);
    assert.equal(nx?.authorities[0]?.ttl, 60);
    const nodata = prepareForCache(TYPE.AAAA, RCODE.NOERROR, [], [SOA(3600, 7200)], 120);
    assert.equal(nodata?.seconds, 120);
    const chain = prepareForCache(TYPE.AAAA, RCODE.NOERROR, [CNAME('x', 'y', 30)], [SOA(300, 60)], 3600);
    assert.equal(chain?.seconds, 30, 'the CNAME is shorter than the negative TTL');
    // An NXDOMAIN that carries records (a chain to a name that does not exist) is negative all the same.
    assert.equal(prepareForCache(TYPE.A, RCODE.NXDOMAIN, [CNAME('x', 'y', 300)], [SOA(300, 45)], 3600)?.seconds, 45);
  });

  it('property: the cache agrees with a model LRU of the same bound, and never holds more than it', () => {
    const op = fc.oneof(
      fc.record({ k: fc.constant('set' as const), key: fc.integer({ min: 0, max: 12 }), ttl: fc.integer({ min: 0, max: 50 }) }),
      fc.record({ k: fc.constant('get' as const), key: fc.integer({ min: 0, max: 12 }) }),
      fc.record({ k: fc.constant('tick' as const), by: fc.integer({ min: 0, max: 30 }) }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.array(op, { maxLength: 80 }), (cap, ops) => {
        const c = new AnswerCache(cap);
        // The model: an array, least recently used first, of [key, expiresAt].
        let model: [string, number][] = [];
        let now = 0;
        for (const o of ops) {
          if (o.k === 'tick') now += o.by;
          else if (o.k === 'set') {
            const key = String(o.key);
            c.set(entry(key, now + o.ttl));
            model = model.filter(([k]) => k !== key);
            model.push([key, now + o.ttl]);
            while (model.length > cap) model.shift();
          } else {
            const key = String(o.key);
            const got = c.get(key, now);
            const at = model.findIndex(([k]) => k === key);
            const m = at >= 0 ? model[at] : undefined;
            if (!m || now > m[1]) {
              assert.equal(got, undefined);
              if (m) model.splice(at, 1);
            } else {
              assert.equal(got?.key, key);
              model.splice(at, 1);
              model.push(m);
            }
          }
          assert.ok(c.size <= cap);
          assert.deepEqual(c.keys(), model.map(([k]) => k));
        }
      }),
      { numRuns: 300 },
    );
  });
});
