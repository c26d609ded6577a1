/**
 * Gradual enforcement (issue 11): a deny rule's own `mode:`, `scopes:` of
 * users or services with the other mode than the policy's. The loader's
 * errors, the names written into the kernel, the compiled shape, explain,
 * `suggest --check` and the promotions `suggest` proposes.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { buildLogPrefix, buildSetName, parseLogPrefix, parseSetName } from '../../src/compile/kernel-names.js';
import { scopedModes } from '../../src/compile/scoped-modes.js';
import { PolicyError } from '../../src/errors.js';
import type { RecordedEvent } from '../../src/events/event-store.js';
import { SqliteStore } from '../../src/events/sqlite-store.js';
import { checkPolicy } from '../../src/learn/check-policy.js';
import { factsOf, Observations } from '../../src/learn/observations.js';
import { promotions } from '../../src/learn/promote.js';
import { suggestPolicy } from '../../src/learn/suggest-policy.js';
import { explain } from '../../src/policy/explain.js';
import { compileFrom, policyFrom } from '../support/fixtures.js';

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 11, 6, 12, 0, 0);

function errorsOf(yaml: string): string[] {
  try {
    policyFrom(yaml, 'g.yaml');
  } catch (err) {
    if (err instanceof PolicyError) return err.issues.map((i) => `${i.line}:${i.column}: ${i.message}`);
    throw err;
  }
  return [];
}

const ENFORCE_TRIAL = `mode: enforce
rules:
  - name: web
    to: [198.18.1.0/24]
    ports: [443/tcp]
  - name: meta
    action: deny
    to: [198.18.1.99]
    mode: audit
scopes:
  - name: nobody-trial
    mode: audit
    users: [65534]
`;

describe('unit: gradual enforcement', () => {
  it('policy errors name file:line:col: mode on an allow rule, a scope with the policy\'s mode, both or neither kind, a user in two scopes, unknown keys', () => {
    const errs = errorsOf(`mode: enforce
rules:
  - name: web
    to: [198.18.1.0/24]
    mode: audit
scopes:
  - name: a
    mode: enforce
    users: [65534]
  - name: b
    mode: audit
    users: [65534]
    services: [x.service]
  - name: c
    mode: audit
  - name: d
    mode: audit
    users: [1001]
    colour: red
`);
    assert.ok(errs.some((e) => /^5:11: mode is for deny rules: allow rule "web" never blocks/.test(e)), errs.join('\n'));
    assert.ok(errs.some((e) => /^8:11: scope "a" has the policy's own mode \(enforce\): it would change nothing/.test(e)), errs.join('\n'));
    assert.ok(errs.some((e) => /^10:5: scope "b" needs exactly one of users or services/.test(e)), errs.join('\n'));
    assert.ok(errs.some((e) => /^12:13: user 65534 \(uid 65534\) is already in scope "a"/.test(e)), errs.join('\n'));
    assert.ok(errs.some((e) => /scope "c" needs exactly one of users or services/.test(e)), errs.join('\n'));
    assert.ok(errs.some((e) => /^19:5: unknown key "colour"/.test(e)), errs.join('\n'));
    assert.equal(errorsOf(ENFORCE_TRIAL).length, 0);
  });

  it('a deny rule with the policy\'s own mode and no scope of the other is a warning, not a silent no-op', () => {
    const p = policyFrom('mode: enforce\nrules:\n  - name: m\n    action: deny\n    to: [198.18.1.99]\n    mode: enforce\n');
    assert.match(p.warnings.map((w) => w.message).join('\n'), /has the policy's own mode \(enforce\) and no scope has the other/);
  });

  it('log prefixes and scope sets parse back; `@` and `#rule` cannot collide with rule names', () => {
    for (const p of [{ verdict: 'would-block' as const, rule: '#default', scope: 'nobody-trial' }, { verdict: 'blocked' as const, rule: 'meta', scope: '#rule' }, { verdict: 'blocked' as const, rule: 'meta' }]) {
      assert.deepEqual(parseLogPrefix(buildLogPrefix(p)), p);
    }
    assert.equal(parseLogPrefix('sluice:W:meta@#other '), null);
    assert.equal(parseLogPrefix('sluice:W:meta@ '), null);
    assert.ok(buildLogPrefix({ verdict: 'would-block', rule: 'a'.repeat(48), scope: 'b'.repeat(48) }).length <= 127, 'fits the kernel\'s prefix');
    assert.deepEqual(parseSetName(buildSetName({ kind: 'scope', scope: 'nobody-trial', dim: 'u' })), { kind: 'scope', scope: 'nobody-trial', dim: 'u' });
    assert.deepEqual(parseSetName(buildSetName({ kind: 'scope', scope: 'svc', dim: 'cg2' })), { kind: 'scope', scope: 'svc', dim: 'cg2' });
  });

  it('the compiled table: the audit rule\'s match is jumped to, its block chain records and returns (once per packet); the default records would-block for the scope and accepts; status reads it back', () => {
    const { ruleset } = compileFrom(ENFORCE_TRIAL);
    const output = ruleset.chains.find((c) => c.name === 'output');
    const metaRule = output?.rules.find((r) => r.comment === 'deny meta: in audit by its own mode');
    assert.deepEqual(metaRule?.stmts, [{ k: 'jump', chain: 'audit_meta' }]);
    const auditMeta = ruleset.chains.find((c) => c.name === 'audit_meta');
    assert.ok(auditMeta?.rules.length && auditMeta.rules.every((r) => JSON.stringify(r.stmts.at(-1)) === JSON.stringify({ k: 'goto', chain: 'block_meta' })));
    const blockMeta = ruleset.chains.find((c) => c.name === 'block_meta');
    assert.ok(blockMeta?.rules.every((r) => JSON.stringify(r.stmts.at(-1)) === JSON.stringify({ k: 'verdict', v: 'return' })));
    const dflt = ruleset.chains.find((c) => c.name === 'default_block');
    const scoped = dflt?.rules.find((r) => r.stmts.some((s) => s.k === 'log' && s.prefix === 'sluice:W:#default@nobody-trial '));
    assert.ok(scoped, 'a would-block record for the scope');
    assert.deepEqual(scoped?.stmts[0], { k: 'lookup', sel: 'meta skuid', set: 's_nobody-trial_u' });
    assert.deepEqual(scoped?.stmts.at(-1), { k: 'verdict', v: 'accept' });
    const modes = scopedModes(ruleset);
    assert.deepEqual(modes.scopes, [{ name: 'nobody-trial', mode: 'audit', users: [65534], cgroups: 0 }]);
    assert.deepEqual(modes.rules, [{ rule: 'meta', mode: 'audit' }]);
  });

  it('explain: the scope, the rule\'s own mode, and the reverse', () => {
    const p = policyFrom(ENFORCE_TRIAL);
    const dest = { kind: 'range' as const, range: { family: 4 as const, start: 0xc6120214n, end: 0xc6120214n } };
    const asNobody = explain(p, { dest, proto: 'tcp', port: 443, uid: 65534, service: 'none' });
    assert.equal(asNobody.verdict, 'block');
    assert.equal(asNobody.enforced, false);
    assert.equal(asNobody.scope, 'nobody-trial');
    assert.match(asNobody.summary, /audit by scope nobody-trial: recorded, not blocked/);
    const asRoot = explain(p, { dest, proto: 'tcp', port: 443, uid: 0, service: 'none' });
    assert.equal(asRoot.enforced, true);
    assert.equal(asRoot.scope, undefined);
    const open = explain(p, { dest, proto: 'tcp', port: 443 });
    assert.match(open.summary, /unless the sender is in scope nobody-trial \(audit\)/);
    const meta = explain(p, { dest: { kind: 'range', range: { family: 4, start: 0xc6120163n, end: 0xc6120163n } }, proto: 'tcp', port: 443, uid: 0 });
    assert.equal(meta.verdict, 'allow', 'the audit-mode deny rule lets rule web decide');
    assert.deepEqual(meta.audited.map((a) => a.rule), ['meta']);
    const reverse = policyFrom('mode: audit\nrules:\n  - name: web\n    to: [198.18.1.0/24]\nscopes:\n  - name: first\n    mode: enforce\n    users: [65534]\n');
    const r = explain(reverse, { dest, proto: 'tcp', port: 443, uid: 65534 });
    assert.equal(r.enforced, true);
    assert.equal(r.scope, 'first');
    assert.match(r.summary, /\[enforced: scope first\]/);
  });

  it('suggest --check: a block in an audit scope is recorded, not broken; the same traffic from root breaks', () => {
    const obs = new Observations();
    const ev = (uid: number, id: number): RecordedEvent & { id: number } => ({ id, time: NOW, verdict: 'allowed', rule: 'x', family: 4, proto: 6, src: '198.18.0.2', dst: '198.18.2.20', sport: 40000, dport: 443, uid });
    obs.add(ev(65534, 1));
    let r = checkPolicy(policyFrom(ENFORCE_TRIAL), obs);
    assert.equal(r.wouldBreak.events, 0);
    assert.deepEqual(r.audited, { events: 1, flows: 1 });
    obs.add(ev(0, 2));
    r = checkPolicy(policyFrom(ENFORCE_TRIAL), obs);
    assert.equal(r.wouldBreak.events, 1);
  });

  it('promotions: stable after N days without would-block; not before the history reaches back; would-block of a scope, a rule and a sender count against each', () => {
    const p = policyFrom(ENFORCE_TRIAL);
    const row = (time: number, verdict: RecordedEvent['verdict'], rule: string, uid: number, scope?: string) =>
      factsOf({ id: 1, time, verdict, rule, family: 4, proto: 6, src: '198.18.0.2', dst: '198.18.2.20', dport: 443, uid, ...(scope ? { scope } : {}) });
    const quiet = promotions(p, [row(NOW - 20 * DAY, 'would-block', '#default', 65534, 'nobody-trial')], { stableDays: 14, until: NOW, historyFrom: NOW - 30 * DAY });
    assert.deepEqual(quiet.candidates.map((c) => [c.target.kind, c.stable]), [['rule', true], ['scope', true]], 'the old would-block is outside the 14 days');
    const busy = promotions(p, [row(NOW - 2 * DAY, 'would-block', '#default', 65534, 'nobody-trial'), row(NOW - DAY, 'would-block', 'meta', 0, '#rule')], { stableDays: 14, until: NOW, historyFrom: NOW - 30 * DAY });
    assert.deepEqual(busy.candidates.map((c) => [c.target.kind, c.stable, c.wouldBlock]), [['rule', false, 1], ['scope', false, 1]]);
    const young = promotions(p, [], { stableDays: 14, until: NOW, historyFrom: NOW - 3 * DAY });
    assert.ok(young.candidates.every((c) => !c.stable), 'three days of history cannot show fourteen stable ones');
    // Audit mode: the policy, and each sender seen.
    const audit = policyFrom('mode: audit\nrules:\n  - name: web\n    to: [198.18.1.0/24]\n');
    const a = promotions(audit, [row(NOW - DAY, 'would-block', '#default', 1001), row(NOW - DAY, 'allowed', 'web', 33)], { stableDays: 7, until: NOW, historyFrom: NOW - 10 * DAY });
    assert.deepEqual(
      a.candidates.map((c) => [c.target.kind, c.target.kind === 'sender' ? c.target.user : undefined, c.stable]),
      [['policy', undefined, false], ['sender', 1001, false], ['sender', 33, true]],
    );
    assert.match(a.candidates[2]?.proposal ?? '', /a scope with mode: enforce and users: \[33\]/);
  });

  it('suggest writes the promotions as comments on the existing policy, naming --stable-days', () => {
    const p = policyFrom(ENFORCE_TRIAL);
    const report = promotions(p, [], { stableDays: 14, until: NOW, historyFrom: NOW - 30 * DAY });
    const s = suggestPolicy(new Observations(), { existing: { policy: p, text: ENFORCE_TRIAL, file: 'g.yaml' }, since: NOW - 7 * DAY, until: NOW, promotions: report });
    assert.match(s.yaml, /# sluice suggest: promotions after 14 days without would-block \(--stable-days 14\)/);
    assert.match(s.yaml, /# sluice suggest: stable for 14 days \(no would-block\): promote: rule meta: mode: enforce\n {2}- name: meta/);
    assert.match(s.yaml, /# sluice suggest: stable for 14 days \(no would-block\): promote: remove scope nobody-trial/);
    assert.equal(policyFrom(s.yaml).scopes.length, 1, 'comments only: the meaning is unchanged');
  });

  it('the event store keeps the scope, and a version-1 store gains the column on open', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-gradual-'));
    try {
      const path = join(dir, 'events.db');
      const old = new Database(path);
      old.exec(`CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, verdict TEXT NOT NULL, rule TEXT NOT NULL,
        family INTEGER NOT NULL, proto INTEGER NOT NULL, src TEXT NOT NULL, dst TEXT NOT NULL, sport INTEGER, dport INTEGER, icmp_type INTEGER, iface TEXT, uid INTEGER, user TEXT,
        pid INTEGER, exe TEXT, exe_base TEXT, cmdline TEXT, comm TEXT, unit TEXT, cgroup TEXT, hostname TEXT, attribution TEXT);
        CREATE TABLE pipeline (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO events (time, verdict, rule, family, proto, src, dst) VALUES (1, 'blocked', '#default', 4, 6, '198.18.0.2', '198.18.2.20');
        PRAGMA user_version = 1;`);
      old.close();
      const store = new SqliteStore(path);
      store.append([{ time: 2, verdict: 'would-block', rule: '#default', scope: 'nobody-trial', family: 4, proto: 6, src: '198.18.0.2', dst: '198.18.2.20' }]);
      const all = store.query({});
      assert.equal(all.length, 2);
      assert.equal(all[0]?.scope, undefined);
      assert.equal(all[1]?.scope, 'nobody-trial');
      assert.equal(store.firstTime(), 1);
      store.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
