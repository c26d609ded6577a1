/**
 * Every name Sluice writes into the kernel is built and parsed by one module
 * (src/compile/kernel-names.ts). Two kinds of tests: each parser inverts its
 * builder on arbitrary input and refuses what no builder writes; and every
 * name the compiler actually emits, over the golden policies and the policy
 * fuzzer's generated policies, parses back to the rule and kind that built it,
 * with no two objects of a kind sharing a name.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import YAML from 'yaml';
import { compileRuleset } from '../../src/compile/compile-ruleset.js';
import {
  BUILTIN_RULES,
  BUILTIN_SETS,
  buildChainName,
  buildCounterName,
  buildDnsReplyPrefix,
  buildLimitName,
  buildLogPrefix,
  buildSetName,
  buildTableComment,
  DEFAULT_RULE,
  ENCRYPTED_DNS_RULE,
  parseQueryMark,
  scopeQueryMark,
  SPOOFED_RULE,
  type LogVerdict,
  isDnsReplyPrefix,
  KernelNameError,
  parseChainName,
  parseCounterName,
  parseLimitName,
  parseLogPrefix,
  parseSetName,
  parseTableComment,
  type ChainRef,
  type CounterRef,
  type LogPrefix,
  type SetRef,
} from '../../src/compile/kernel-names.js';
import type { Ruleset } from '../../src/compile/ruleset.js';
import { PolicyError } from '../../src/errors.js';
import { parsePolicy } from '../../src/policy/load-policy.js';
import type { Policy } from '../../src/policy/policy.js';
import { fakeEnv, GOLDEN_DIR, policyFrom, readGolden } from '../support/fixtures.js';
import { fakeHost, policyDocArb, runs, show } from './support/arbitraries.js';

const SHA = 'ab'.repeat(32);
const ruleName = fc.stringMatching(/^[a-z0-9][a-z0-9_.-]{0,47}$/);
const logRule = fc.oneof(ruleName, fc.constantFrom(...BUILTIN_RULES));

describe('unit: kernel names, build and parse', () => {
  it('log prefixes: every verdict and rule, built-ins included, parse back', () => {
    fc.assert(
      fc.property(fc.constantFrom('blocked' as const, 'would-block' as const, 'allowed' as const), logRule, (verdict, rule) => {
        const p: LogPrefix = { verdict, rule };
        const text = buildLogPrefix(p);
        assert.deepEqual(parseLogPrefix(text), p);
        // NF_LOG_PREFIXLEN is 128 with the terminating NUL.
        assert.ok(Buffer.byteLength(text) < 128);
      }),
      runs(500),
    );
    assert.equal(buildLogPrefix({ verdict: 'blocked', rule: ENCRYPTED_DNS_RULE }), 'sluice:B:#encrypted-dns ');
    assert.deepEqual(parseLogPrefix('sluice:B:#encrypted-dns '), { verdict: 'blocked', rule: ENCRYPTED_DNS_RULE });
    assert.deepEqual(parseLogPrefix('sluice:W:#default '), { verdict: 'would-block', rule: DEFAULT_RULE });
  });

  it('log prefixes: anything not built here is refused, and the builder refuses what it cannot write', () => {
    for (const bad of ['', 'sluice:', 'sluice:B:', 'sluice:B: ', 'sluice:B:api', 'sluice:Bx:api ', 'sluice:b:api ', 'sluice:B:Api ', 'sluice:B:#nope ', 'sluice:B:#default  ', 'sluice:B:_a ', 'sluice:D:dns ', 'x:B:api ']) {
      assert.equal(parseLogPrefix(bad), null, bad);
    }
    assert.throws(() => buildLogPrefix({ verdict: 'blocked', rule: 'Bad Name' }), KernelNameError);
    assert.throws(() => buildLogPrefix({ verdict: 'blocked', rule: '#custom' }), KernelNameError);
    fc.assert(
      fc.property(fc.string({ maxLength: 70 }), (text) => {
        const p = parseLogPrefix(text);
        if (p) assert.equal(buildLogPrefix(p), text);
      }),
      runs(2000),
    );
    assert.ok(isDnsReplyPrefix(buildDnsReplyPrefix()));
    assert.equal(parseLogPrefix(buildDnsReplyPrefix()), null, 'DNS replies are not flow records');
  });

  it('counters, sets, limits and chains: parse(build(x)) is x, and build(parse(name)) is name', () => {
    const counterRef: fc.Arbitrary<CounterRef> = fc.oneof(
      ruleName.map((rule): CounterRef => ({ kind: 'rule', rule })),
      fc.constantFrom<CounterRef>({ kind: 'default' }, { kind: 'essentials' }, { kind: 'dns-upstream' }, { kind: 'encrypted-dns' }),
      fc.tuple(fc.constantFrom('block' as const, 'allow' as const), fc.constantFrom('shared' as const, 'user' as const)).map(([log, budget]): CounterRef => ({ kind: 'suppressed', log, budget })),
    );
    const dim = fc.oneof(fc.constantFrom('a4', 'a6', 'n4', 'n6', 'd4', 'd6', 'p', 'pt', 'pu', 'if', 'u'), fc.integer({ min: 0, max: 999 }).map((l) => `cg${l}`));
    const setRef: fc.Arbitrary<SetRef> = fc.oneof(
      fc.tuple(ruleName, dim).map(([rule, d]) => ({ kind: 'rule', rule, dim: d }) as SetRef),
      fc.constantFrom(...BUILTIN_SETS).map((name): SetRef => ({ kind: 'builtin', name })),
    );
    const chainRef: fc.Arbitrary<ChainRef> = fc.oneof(
      fc.constantFrom<ChainRef>({ kind: 'base', name: 'output' }, { kind: 'base', name: 'dns_redirect' }, { kind: 'base', name: 'dns_observe' }, { kind: 'base', name: 'guard_in' }, { kind: 'refuse' }, { kind: 'flows' }, { kind: 'dns' }),
      fc.integer({ min: 0, max: 255 }).map((group): ChainRef => ({ kind: 'admit', group })),
      logRule.map((rule): ChainRef => ({ kind: 'block', rule })),
      ruleName.map((rule): ChainRef => ({ kind: 'allow', rule })),
    );
    fc.assert(
      fc.property(counterRef, setRef, chainRef, (c, s, ch) => {
        assert.deepEqual(parseCounterName(buildCounterName(c)), c);
        assert.deepEqual(parseSetName(buildSetName(s)), s);
        assert.deepEqual(parseChainName(buildChainName(ch)), ch);
      }),
      runs(1000),
    );
    for (const log of ['block', 'allow', 'dns'] as const) assert.deepEqual(parseLimitName(buildLimitName({ kind: 'log', log })), { kind: 'log', log });
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 60 }), fc.stringMatching(/^(r_|block_|allow_)[a-z0-9_.#-]{0,52}$/)), (name) => {
        const c = parseCounterName(name);
        if (c) assert.equal(buildCounterName(c), name);
        const s = parseSetName(name);
        if (s) assert.equal(buildSetName(s), name);
        const ch = parseChainName(name);
        if (ch) assert.equal(buildChainName(ch), name);
      }),
      runs(3000),
    );
  });

  it('a set name splits at its last underscore: rule names may contain underscores, set kinds never do', () => {
    assert.deepEqual(parseSetName('r_a_p_a4'), { kind: 'rule', rule: 'a_p', dim: 'a4' });
    assert.deepEqual(parseSetName('r_web_cg3'), { kind: 'rule', rule: 'web', dim: 'cg3' });
    assert.equal(parseSetName('r_web_x4'), null);
    assert.equal(parseSetName('r__p'), null);
    assert.equal(parseSetName('r_web'), null);
  });

  it('a deny rule named like a built-in never gets the built-in\'s chain', () => {
    assert.notEqual(buildChainName({ kind: 'block', rule: 'default' }), buildChainName({ kind: 'block', rule: DEFAULT_RULE }));
    assert.notEqual(buildChainName({ kind: 'block', rule: 'encrypted-dns' }), buildChainName({ kind: 'block', rule: ENCRYPTED_DNS_RULE }));
    assert.deepEqual(parseChainName(buildChainName({ kind: 'block', rule: DEFAULT_RULE })), { kind: 'block', rule: DEFAULT_RULE });
    assert.deepEqual(parseChainName('block_default'), { kind: 'block', rule: 'default' });
  });

  it('a DNS query mark: a scope index round-trips, every uid below the reserved range stays a uid, 0xffffffff is no scope', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffe }), (i) => assert.deepEqual(parseQueryMark(scopeQueryMark(i)), { scope: i })));
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffefff }), (uid) => assert.deepEqual(parseQueryMark(uid), { uid })));
    assert.deepEqual(parseQueryMark(0xffffffff), { uid: 0xffffffff });
    assert.equal(scopeQueryMark(1), 0xfffff001);
    for (const bad of [-1, 0xfff, 1.5, Number.NaN]) assert.throws(() => scopeQueryMark(bad), KernelNameError, String(bad));
  });

  it('the table comment: mode, policy hash and extra key=value fields, carried and parsed back', () => {
    const c = { mode: 'enforce' as const, sha256: SHA, fields: {} };
    assert.equal(buildTableComment(c), `sluice mode=enforce policy=sha256:${SHA}`);
    assert.deepEqual(parseTableComment(`sluice mode=enforce policy=sha256:${SHA}`), c);
    // A field a newer writer adds (the conntrack-mark epoch) is carried, whatever the order.
    const withEpoch = parseTableComment(`sluice epoch=42 mode=audit policy=sha256:${SHA} x-future=a:b=c`);
    assert.deepEqual(withEpoch, { mode: 'audit', sha256: SHA, fields: { epoch: '42', 'x-future': 'a:b=c' } });
    assert.equal(buildTableComment(withEpoch as NonNullable<typeof withEpoch>), `sluice mode=audit policy=sha256:${SHA} epoch=42 x-future=a:b=c`);
    fc.assert(
      fc.property(
        fc.constantFrom('audit' as const, 'enforce' as const),
        fc.stringMatching(/^[0-9a-f]{64}$/),
        fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9_-]{0,8}$/).filter((k) => k !== 'mode' && k !== 'policy'), fc.stringMatching(/^[!-~]{1,12}$/), { maxKeys: 4 }),
        (mode, sha256, fields) => {
          const built = { mode, sha256, fields: { ...fields } };
          assert.deepEqual(parseTableComment(buildTableComment(built)), built);
        },
      ),
      runs(500),
    );
    for (const bad of [
      '',
      'sluice',
      `sluice mode=enforce`,
      `sluice mode=Enforce policy=sha256:${SHA}`,
      `sluice mode=enforce policy=sha256:${SHA.slice(1)}`,
      `sluice mode=enforce policy=${SHA}`,
      `sluice mode=enforce mode=audit policy=sha256:${SHA}`,
      `sluice mode=enforce policy=sha256:${SHA} epoch`,
      `sluice mode=enforce policy=sha256:${SHA}  epoch=1`,
      `sluice mode=enforce policy=sha256:${SHA} Epoch=1`,
      `nft mode=enforce policy=sha256:${SHA}`,
      `xsluice mode=enforce policy=sha256:${SHA}`,
    ]) {
      assert.equal(parseTableComment(bad), null, bad);
    }
    assert.throws(() => buildTableComment({ mode: 'enforce', sha256: SHA, fields: { mode: 'audit' } }), KernelNameError);
    assert.throws(() => buildTableComment({ mode: 'enforce', sha256: SHA, fields: { epoch: 'a b' } }), KernelNameError);
    assert.throws(() => buildTableComment({ mode: 'enforce', sha256: 'abc', fields: {} }), KernelNameError);
  });
});

/**
 * Checks every name in a compiled ruleset against the policy it came from.
 * Returns how many names it checked.
 */
function checkEmittedNames(policy: Policy, rs: Ruleset): number {
  let checked = 0;
  const ctx = (what: string) => `${what} (policy rules ${policy.rules.map((r) => `${r.action} ${r.name}`).join(', ')})`;
  const unique = (kind: string, names: string[]) => {
    const seen = new Set<string>();
    for (const n of names) {
      assert.ok(!seen.has(n), ctx(`two ${kind}s are named ${n}`));
      seen.add(n);
    }
  };
  const rules = new Map(policy.rules.map((r) => [r.name, r]));

  // The table comment says what built the table, and the flow epoch and ct mark bits it marks flows with.
  assert.deepEqual(parseTableComment(rs.comment), { mode: policy.mode, sha256: policy.sha256, fields: { ctmark: `0x${policy.flows.ctMarkMask.toString(16).padStart(8, '0')}`, epoch: '1' } });
  checked++;

  unique('counter', rs.counters.map((c) => c.name));
  unique('set', rs.sets.map((s) => s.name));
  unique('chain', rs.chains.map((c) => c.name));
  unique('limit', rs.limits.map((l) => l.name));

  const ruleCounters = new Set<string>();
  for (const c of rs.counters) {
    const ref = parseCounterName(c.name);
    assert.ok(ref, ctx(`counter ${c.name} does not parse`));
    assert.equal(buildCounterName(ref), c.name);
    if (ref.kind === 'rule') {
      const rule = rules.get(ref.rule);
      assert.ok(rule, ctx(`counter ${c.name} names no rule`));
      assert.equal(c.comment, `${rule.action} ${rule.name}`, 'the counter is the one its rule built');
      ruleCounters.add(ref.rule);
    }
    checked++;
  }
  assert.deepEqual([...ruleCounters].sort(), [...rules.keys()].sort(), 'one counter per rule');

  for (const s of rs.sets) {
    const ref = parseSetName(s.name);
    assert.ok(ref, ctx(`set ${s.name} does not parse`));
    assert.equal(buildSetName(ref), s.name);
    if (ref.kind === 'rule') {
      assert.ok(rules.has(ref.rule), ctx(`set ${s.name} names no rule`));
      assert.ok(s.comment === `rule ${ref.rule}` || s.comment?.startsWith(`rule ${ref.rule} [`), `set ${s.name} is the one rule ${ref.rule} built: ${s.comment}`);
      assert.equal(ref.dim.startsWith('d'), s.dynamic && !s.meter, `set ${s.name}: DNS-filled sets and only they are named d4/d6`);
    }
    checked++;
  }

  for (const l of rs.limits) {
    const ref = parseLimitName(l.name);
    assert.ok(ref, `limit ${l.name} does not parse`);
    assert.equal(buildLimitName(ref), l.name);
    checked++;
  }

  const blockRules = new Set<string>();
  const allowRules = new Set<string>();
  const blocked = policy.mode === 'enforce' ? 'blocked' : 'would-block';
  for (const c of rs.chains) {
    const ref = parseChainName(c.name);
    assert.ok(ref, ctx(`chain ${c.name} does not parse`));
    assert.equal(buildChainName(ref), c.name);
    checked++;
    const prefixes = c.rules.flatMap((r) => r.stmts.flatMap((s) => (s.k === 'log' ? [s.prefix] : [])));
    if (ref.kind === 'block' || ref.kind === 'allow') {
      (ref.kind === 'block' ? blockRules : allowRules).add(ref.rule);
      assert.ok(prefixes.length > 0, `chain ${c.name} logs`);
      for (const text of prefixes) {
        // The record says which rule decided: the very rule this chain was built for.
        // (Forged sources are dropped in audit mode too: recorded as blocked.)
        // Gradual enforcement: a record made by a scope's mode or the rule's own names it, and has that mode's verdict.
        const parsed = parseLogPrefix(text);
        const own: 'audit' | 'enforce' | undefined = policy.rules.find((r) => r.name === ref.rule)?.mode;
        const scope = policy.scopes.find((s) => s.name === parsed?.scope);
        const mode: 'audit' | 'enforce' | undefined = parsed?.scope === '#rule' ? own : scope?.mode;
        const verdict: LogVerdict = ref.kind === 'allow' ? 'allowed' : ref.rule === SPOOFED_RULE ? 'blocked' : mode ? (mode === 'enforce' ? 'blocked' : 'would-block') : blocked;
        assert.deepEqual(parsed, { verdict, rule: ref.rule, ...(parsed?.scope !== undefined && (mode !== undefined) ? { scope: parsed.scope } : {}) }, ctx(`prefix ${JSON.stringify(text)} in chain ${c.name}`));
        checked++;
      }
    } else if (ref.kind === 'base' && (ref.name === 'dns_observe' || ref.name === 'dns_observe_queries')) {
      assert.ok(prefixes.every(isDnsReplyPrefix));
    } else {
      assert.deepEqual(prefixes, [], `chain ${c.name} logs nothing`);
    }
    for (const r of c.rules) {
      for (const s of r.stmts) {
        if (s.k === 'goto' || s.k === 'jump') assert.ok(parseChainName(s.chain), `goto ${s.chain}`);
        if (s.k === 'counter') assert.ok(parseCounterName(s.name), `counter ${s.name}`);
        if (s.k === 'lookup') assert.ok(parseSetName(s.set), `lookup @${s.set}`);
        if (s.k === 'limit') assert.ok(parseLimitName(s.name), `limit ${s.name}`);
        if (s.k === 'meter') assert.equal(parseSetName(s.set)?.kind, 'builtin', `meter @${s.set}`);
      }
    }
  }
  // Block chains: every deny rule and the built-ins in force; allow chains: the logged allow rules.
  const wantBlock = [...policy.rules.filter((r) => r.action === 'deny').map((r) => r.name), ...(policy.defaultAction === 'deny' ? [DEFAULT_RULE] : []), SPOOFED_RULE];
  assert.deepEqual([...blockRules].filter((r) => r !== ENCRYPTED_DNS_RULE).sort(), wantBlock.sort(), ctx('block chains'));
  assert.equal(blockRules.has(ENCRYPTED_DNS_RULE), rs.counters.some((c) => parseCounterName(c.name)?.kind === 'encrypted-dns'));
  const wantAllow = policy.rules.filter((r) => r.action === 'allow' && (r.log || policy.log.allowed)).map((r) => r.name);
  assert.deepEqual([...allowRules].sort(), wantAllow.sort(), ctx('allow chains'));
  return checked;
}

describe('unit: every name the compiler emits parses back to what built it', () => {
  const golden = readdirSync(GOLDEN_DIR).filter((f) => /^\d\d-.*\.yaml$/.test(f));

  for (const file of golden) {
    it(`golden policy ${file}`, () => {
      const policy = policyFrom(readGolden(file), file);
      const { ruleset } = compileRuleset(policy, fakeEnv(policy));
      assert.ok(checkEmittedNames(policy, ruleset) > 10);
    });
  }

  it('the golden policies between them emit both built-in rules, in enforce and audit mode', () => {
    const prefixes = new Set<string>();
    for (const file of golden) {
      const policy = policyFrom(readGolden(file), file);
      for (const c of compileRuleset(policy, fakeEnv(policy)).ruleset.chains) for (const r of c.rules) for (const s of r.stmts) if (s.k === 'log') prefixes.add(s.prefix);
    }
    for (const p of ['sluice:B:#default ', 'sluice:W:#default ', 'sluice:B:#encrypted-dns ', 'sluice:W:#encrypted-dns ']) assert.ok(prefixes.has(p), p);
  });

  it('policies from the policy fuzzer\'s generator, rule names that look like built-in objects included', () => {
    let compiled = 0;
    let names = 0;
    fc.assert(
      fc.property(fc.oneof({ weight: 4, arbitrary: policyDocArb(true) }, { weight: 1, arbitrary: policyDocArb(false) }), (doc) => {
        let policy: Policy;
        try {
          policy = parsePolicy(Buffer.from(YAML.stringify(doc)), 'fuzz.yaml', fakeHost());
        } catch (err) {
          if (err instanceof PolicyError) return;
          throw err;
        }
        const { ruleset } = compileRuleset(policy, fakeEnv(policy));
        try {
          names += checkEmittedNames(policy, ruleset);
        } catch (err) {
          throw new Error(`${(err as Error).message}\n${show(doc)}`);
        }
        compiled++;
      }),
      runs(400),
    );
    // About two thirds load (at the default 400 runs, over 100).
    const floor = Math.floor(runs(400).numRuns / 4);
    assert.ok(compiled > floor, `only ${compiled} generated policies loaded: the name checks barely ran (want over ${floor})`);
    assert.ok(names > compiled * 10);
  });
});
