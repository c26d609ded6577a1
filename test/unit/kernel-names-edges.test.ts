/**
 * Every refusal of the kernel-name builders, with its reason, and the edges
 * of every parser: anchors of the patterns, lengths, group bounds, the
 * comment's size limit. Written from the mutants that lived through the
 * round-trip tests (npm run mutate -- src/compile/kernel-names.ts): a
 * builder that stopped refusing, or a parser that stopped anchoring, passes
 * a round trip of good names but not these.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  buildChainName,
  buildCounterName,
  buildLimitName,
  buildLogPrefix,
  buildSetName,
  buildTableComment,
  isDnsReplyPrefix,
  KernelNameError,
  objectNames,
  parseChainName,
  parseLogPrefix,
  parseSetName,
  parseTableComment,
  type ChainRef,
  type CounterRef,
  type LimitRef,
  type LogPrefix,
  type SetRef,
  type TableComment,
} from '../../src/compile/kernel-names.js';

const SHA = 'a'.repeat(64);

/** Asserts that build(x) throws a KernelNameError whose message names the reason and the value. */
function refuses<T>(build: (x: T) => string, x: T, reason: string, shown: string): void {
  assert.throws(
    () => build(x),
    (err: unknown) => {
      assert.ok(err instanceof KernelNameError, String(err));
      assert.equal(err.code, 'EKERNELNAME');
      assert.equal(err.message, `Cannot build a kernel name: ${reason}: ${shown}`);
      return true;
    },
  );
}

describe('unit: kernel names, refusals and edges', () => {
  it('log prefixes: an unknown verdict or a bad rule is refused with its reason', () => {
    refuses(buildLogPrefix, { verdict: 'dropped', rule: 'a' } as unknown as LogPrefix, 'unknown verdict', '"dropped"');
    refuses(buildLogPrefix, { verdict: 'blocked', rule: 'Bad Name' }, 'not a rule name', '"Bad Name"');
  });

  it('log prefixes: the verdict letter must be followed by a colon; the DNS prefix is matched whole', () => {
    assert.deepEqual(parseLogPrefix('sluice:B:api '), { verdict: 'blocked', rule: 'api' });
    for (const bad of ['sluice:Bxapi ', 'sluice:B-api ', 'sluice:BB:api ', 'sluice::api ', 'sluiceB:api ']) assert.equal(parseLogPrefix(bad), null, bad);
    assert.equal(isDnsReplyPrefix('sluice:D:dns '), true);
    for (const bad of ['sluice:D:dns', 'sluice:D:dns  ', 'sluice:B:dns ', 'xsluice:D:dns ', '']) assert.equal(isDnsReplyPrefix(bad), false, bad);
  });

  it('counters and limits: bad rules and unknown kinds are refused with their reason', () => {
    refuses(buildCounterName, { kind: 'rule', rule: '-a' }, 'not a rule name', '"-a"');
    refuses(buildCounterName, { kind: 'suppressed', log: 'block', budget: 'global' } as unknown as CounterRef, 'unknown suppressed counter', '{"kind":"suppressed","log":"block","budget":"global"}');
    refuses(buildCounterName, { kind: 'suppressed', log: 'drop', budget: 'user' } as unknown as CounterRef, 'unknown suppressed counter', '{"kind":"suppressed","log":"drop","budget":"user"}');
    refuses(buildCounterName, { kind: 'everything' } as unknown as CounterRef, 'unknown counter', '{"kind":"everything"}');
    refuses(buildLimitName, { kind: 'log', log: 'flood' } as unknown as LimitRef, 'unknown limit', '{"kind":"log","log":"flood"}');
  });

  it('sets: unknown built-ins, bad rules and unknown kinds are refused; parsing anchors the kind at both ends', () => {
    refuses(buildSetName, { kind: 'builtin', name: 'everything' } as unknown as SetRef, 'unknown set', '"everything"');
    refuses(buildSetName, { kind: 'rule', rule: 'A', dim: 'p' }, 'not a rule name', '"A"');
    for (const dim of ['x', 'pp', 'a5', 'cg', 'cg01', 'cg1000', 'ifx', 'xp']) {
      refuses(buildSetName, { kind: 'rule', rule: 'a', dim } as unknown as SetRef, 'unknown set kind', JSON.stringify(dim));
    }
    assert.equal(objectNames.set('web', 'p'), 'r_web_p');
    assert.equal(objectNames.dnsSet('web', 6), 'r_web_d6');
    assert.deepEqual(parseSetName('r_web_cg12'), { kind: 'rule', rule: 'web', dim: 'cg12' });
    assert.deepEqual(parseSetName('r_a_b_n4'), { kind: 'rule', rule: 'a_b', dim: 'n4' });
    for (const bad of ['r_web_pp', 'r_web_xp', 'r_web_cg01', 'r_web_a46', 'r__p', 'r_p', 'r_web_', 'x_web_p']) assert.equal(parseSetName(bad), null, bad);
  });

  it('chains: unknown base chains, identity groups out of 0..255 and bad rules are refused; parsing anchors admit_N', () => {
    refuses(buildChainName, { kind: 'base', name: 'input' } as unknown as ChainRef, 'unknown base chain', '"input"');
    for (const group of [-1, 256, 1.5, Number.NaN]) refuses(buildChainName, { kind: 'admit', group }, 'not an identity group', JSON.stringify(group));
    assert.equal(buildChainName({ kind: 'admit', group: 0 }), 'admit_0');
    assert.equal(objectNames.admitChain(255), 'admit_255');
    refuses(buildChainName, { kind: 'block', rule: 'Bad' }, 'not a rule name', '"Bad"');
    refuses(buildChainName, { kind: 'allow', rule: 'a b' }, 'not a rule name', '"a b"');
    assert.equal(objectNames.blockChain('web'), 'block_web');
    assert.equal(objectNames.allowChain('web'), 'allow_web');
    assert.deepEqual(parseChainName('admit_255'), { kind: 'admit', group: 255 });
    for (const bad of ['admit_256', 'admit_999', 'admit_01', 'xadmit_1', 'admit_1x', 'admit_']) {
      const got = parseChainName(bad);
      assert.ok(got === null || got.kind !== 'admit', `${bad}: ${JSON.stringify(got)}`);
    }
  });

  it('table comment: every refusal with its reason; fields sorted; the 250-character limit is inclusive', () => {
    const c = (over: Partial<TableComment>): TableComment => ({ mode: 'enforce', sha256: SHA, fields: {}, ...over });
    refuses(buildTableComment, c({ mode: 'on' as TableComment['mode'] }), 'unknown mode', '"on"');
    refuses(buildTableComment, c({ sha256: `${SHA}0` }), 'not a sha256', JSON.stringify(`${SHA}0`));
    refuses(buildTableComment, c({ sha256: `x${SHA.slice(1)}` }), 'not a sha256', JSON.stringify(`x${SHA.slice(1)}`));
    for (const key of ['mode', 'policy', 'Epoch', '1a', 'a'.repeat(33), 'a b']) refuses(buildTableComment, c({ fields: { [key]: '1' } }), 'not a comment field name', JSON.stringify(key));
    refuses(buildTableComment, c({ fields: { epoch: 'a b' } }), 'not a value for comment field epoch', '"a b"');
    refuses(buildTableComment, c({ fields: { epoch: '' } }), 'not a value for comment field epoch', '""');
    assert.equal(buildTableComment(c({ fields: { zz: '1', aa: '2' } })), `sluice mode=enforce policy=sha256:${SHA} aa=2 zz=1`);
    // "sluice mode=enforce policy=sha256:<64>" is 98 characters; two fields (values at most 128) fill it to n.
    const base = `sluice mode=enforce policy=sha256:${SHA}`.length;
    const fill = (n: number) => ({ a: 'v'.repeat(73), b: 'w'.repeat(n - base - 6 - 73) });
    assert.equal(buildTableComment(c({ fields: fill(250) })).length, 250);
    refuses(buildTableComment, c({ fields: fill(251) }), 'table comment too long', JSON.stringify(`sluice mode=enforce policy=sha256:${SHA} a=${'v'.repeat(73)} b=${'w'.repeat(251 - base - 6 - 73)}`));
    assert.ok(parseTableComment(buildTableComment(c({ fields: fill(250) }))));
    assert.equal(parseTableComment(`${buildTableComment(c({ fields: fill(250) }))}v`), null, '251 characters');
  });

  it('table comment parsing: every token key=value with a non-empty key, a whole sha256, nothing twice', () => {
    const good = `sluice mode=audit policy=sha256:${SHA}`;
    assert.deepEqual(parseTableComment(`${good} epoch=7`), { mode: 'audit', sha256: SHA, fields: { epoch: '7' } });
    for (const bad of [
      `${good} =7`,
      `${good} epoch`,
      `${good} Epoch=7`,
      `${good} ${'k'.repeat(33)}=7`,
      `${good} epoch=7 epoch=8`,
      `sluice mode=audit policy=sha256:${SHA}0`,
      `sluice mode=audit policy=sha256:${SHA.slice(1)}`,
      `sluice mode=audit policy=sha256:x${SHA.slice(1)}`,
      `sluice mode=audit policy=${SHA}`,
      `sluice mode=audit policy=sha999:${SHA}`,
      `sluice mode=on policy=sha256:${SHA}`,
      `sluicex mode=audit policy=sha256:${SHA}`,
    ]) {
      assert.equal(parseTableComment(bad), null, bad);
    }
  });
});
