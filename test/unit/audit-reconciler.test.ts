import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { publishDnsObserved, type DnsQueryEvent } from '../../src/events/channels.js';
import type { RecordedEvent } from '../../src/events/event-store.js';
import { AuditReconciler } from '../../src/monitor/audit-reconciler.js';
import { parsePolicy } from '../../src/policy/load-policy.js';
import type { Policy } from '../../src/policy/policy.js';
import { fakeHost } from '../support/fixtures.js';
import { waitFor } from '../support/monitor-helpers.js';

const POLICY = `mode: audit
rules:
  - name: web
    to: [api.example.com, "*.cdn.example.com"]
    ports: [443/tcp]
  - name: logged
    to: [logged.example.com]
    ports: [443/tcp]
    log: true
  - name: only-www
    to: [www-only.example.com]
    ports: [443/tcp]
    users: [www-data]
  - name: no-meta
    action: deny
    to: [198.18.9.9]
`;

const policyOf = (text: string): Policy => parsePolicy(Buffer.from(text), 'p.yaml', fakeHost);

function flow(dst: string, time: number, extra: Partial<RecordedEvent> = {}): RecordedEvent {
  return { time, verdict: 'would-block', rule: '#default', family: 4, proto: 6, src: '198.18.0.2', dst, sport: 40000, dport: 443, ...extra };
}

function answer(name: string, addrs: string[], rules: string[], time: number): void {
  const d: DnsQueryEvent = {
    time,
    transport: 'passive',
    client: { address: '198.18.0.2', port: 5353 },
    name,
    type: 1,
    verdict: 'allowed',
    rules,
    rcode: 0,
    answers: addrs,
    dropped: [],
    latencyMs: 0,
  };
  publishDnsObserved(d);
}

function setup(text = POLICY, opts: ConstructorParameters<typeof AuditReconciler>[2] = {}) {
  const policy = policyOf(text);
  const out: RecordedEvent[] = [];
  const r = new AuditReconciler(() => policy, (e) => out.push(e), { holdMs: 30, ...opts });
  r.start();
  return { r, out };
}

describe('audit reconciler: a would-block that raced an observed DNS answer', () => {
  it('an answer observed before the record: reconciled at once, nothing published (the rule does not log)', () => {
    const { r, out } = setup();
    const t = Date.now();
    answer('api.example.com', ['198.18.1.10'], ['web'], t - 3);
    assert.equal(r.offer(flow('198.18.1.10', t)), true);
    assert.deepEqual(out, []);
    assert.equal(r.stats.reconciled, 1);
    r.stop();
  });

  it('an answer that arrives while the record is held: reconciled; a rule that logs allowed flows gets an allowed event', async () => {
    const { r, out } = setup();
    const t = Date.now();
    assert.equal(r.offer(flow('198.18.1.20', t)), true);
    assert.equal(r.holding, 1);
    answer('logged.example.com', ['198.18.1.20'], ['logged'], t - 2);
    assert.equal(r.holding, 1, 'settled; leaves the queue when due');
    await waitFor('the held record to be published and let go', async () => (out.length > 0 && r.holding === 0 ? true : undefined), 5_000);
    assert.equal(out.length, 1);
    assert.equal(out[0]?.verdict, 'allowed');
    assert.equal(out[0]?.rule, 'logged');
    assert.equal(out[0]?.hostname, 'logged.example.com');
    assert.equal(r.holding, 0);
    r.stop();
  });

  it('no answer for the address: published as would-block once the hold ends', async () => {
    const { r, out } = setup();
    assert.equal(r.offer(flow('198.18.2.20', Date.now())), true);
    assert.equal(out.length, 0);
    // The held one is published when its hold ends: waited for, not slept on (a loaded machine is late).
    await waitFor('the held record to be published', async () => (out.length > 0 ? true : undefined), 5_000);
    assert.equal(out.length, 1);
    assert.equal(out[0]?.verdict, 'would-block');
    assert.equal(r.stats.confirmed, 1);
    r.stop();
  });

  it('the answer does not make it allowed: another port, another user, a deny rule, an answer long before, one after', async () => {
    const { r, out } = setup();
    const t = Date.now();
    answer('api.example.com', ['198.18.1.30'], ['web'], t - 1);
    answer('www-only.example.com', ['198.18.1.31'], ['only-www'], t - 1);
    answer('api.example.com', ['198.18.9.9'], ['web'], t - 1);
    answer('a.cdn.example.com', ['198.18.1.32'], ['web'], t - 60_000);
    answer('a.cdn.example.com', ['198.18.1.33'], ['web'], t + 5_000);
    // offer() false: the caller publishes it as it is (at once: an answer seen already names it).
    for (const e of [flow('198.18.1.30', t, { dport: 8443 }), flow('198.18.1.31', t, { uid: 65534 }), flow('198.18.9.9', t), flow('198.18.1.32', t), flow('198.18.1.33', t)]) if (!r.offer(e)) out.push(e);
    await sleep(80);
    assert.deepEqual(out.map((e) => `${e.dst} ${e.verdict}`).sort(), [
      '198.18.1.30 would-block',
      '198.18.1.31 would-block',
      '198.18.1.32 would-block',
      '198.18.1.33 would-block',
      '198.18.9.9 would-block',
    ]);
    assert.equal(r.stats.reconciled, 0);
    r.stop();
  });

  it('the user the rule names: reconciled', () => {
    const { r, out } = setup();
    const t = Date.now();
    answer('www-only.example.com', ['198.18.1.40'], ['only-www'], t - 1);
    assert.equal(r.offer(flow('198.18.1.40', t, { uid: 33 })), true);
    assert.deepEqual(out, []);
    assert.equal(r.stats.reconciled, 1);
    r.stop();
  });

  it('passes through what cannot be the race: enforce mode, blocked, another rule, allowed events, no domain rules', () => {
    const { r } = setup();
    assert.equal(r.offer(flow('198.18.1.10', Date.now(), { verdict: 'allowed', rule: 'web' })), false);
    assert.equal(r.offer(flow('198.18.9.9', Date.now(), { rule: 'no-meta' })), false);
    r.stop();
    const enforce = setup(POLICY.replace('mode: audit', 'mode: enforce'));
    assert.equal(enforce.r.offer(flow('198.18.1.10', Date.now(), { verdict: 'blocked' })), false);
    assert.equal(enforce.r.offer(flow('198.18.1.10', Date.now())), false);
    enforce.r.stop();
    const noGuard = setup('mode: audit\ndns:\n  guard: false\nrules:\n  - name: a\n    to: [198.18.1.0/24]\n');
    assert.equal(noGuard.r.offer(flow('198.18.2.1', Date.now())), false, 'no DNS observation: nothing to wait for');
    noGuard.r.stop();
  });

  it('memory is bounded: beyond maxHeld records are not held; stop publishes what is held', () => {
    const { r, out } = setup(POLICY, { maxHeld: 2, holdMs: 60_000 });
    const t = Date.now();
    assert.equal(r.offer(flow('198.18.3.1', t)), true);
    assert.equal(r.offer(flow('198.18.3.2', t)), true);
    assert.equal(r.offer(flow('198.18.3.3', t)), false);
    assert.equal(r.stats.overflow, 1);
    r.stop();
    assert.equal(out.length, 2);
    assert.ok(out.every((e) => e.verdict === 'would-block'));
  });

  it('remembers at most maxAddresses answered addresses', () => {
    const { r, out } = setup(POLICY, { maxAddresses: 10, holdMs: 1 });
    const t = Date.now();
    for (let i = 0; i < 50; i++) answer('api.example.com', [`198.18.4.${i}`], ['web'], t - 1);
    r.offer(flow('198.18.4.0', t));
    r.offer(flow('198.18.4.49', t));
    r.stop();
    assert.deepEqual(out.map((e) => e.dst), ['198.18.4.0'], 'the oldest answer was forgotten; the newest still reconciles');
  });

  it('a would-block that stays one is named by the answer observed for its address, allowed or refused', async () => {
    const { r, out } = setup();
    const t = Date.now();
    assert.equal(r.offer(flow('198.18.5.1', t)), true, 'held: no answer yet');
    const refused: DnsQueryEvent = { time: t - 1, transport: 'passive', client: { address: '198.18.0.2', port: 5353 }, name: 'unlisted.example.org', type: 1, verdict: 'would-block', rules: [], rcode: 0, answers: ['198.18.5.1', '198.18.5.2'], dropped: [], latencyMs: 0 };
    publishDnsObserved(refused);
    const later = flow('198.18.5.2', t);
    assert.equal(r.offer(later), false, 'named at once by the answer already seen; the caller publishes it');
    assert.equal(later.hostname, 'unlisted.example.org');
    await waitFor('the held record to be published', async () => (out.length > 0 ? true : undefined), 5_000);
    assert.equal(out.length, 1);
    assert.equal(out[0]?.verdict, 'would-block');
    assert.equal(out[0]?.hostname, 'unlisted.example.org');
    r.stop();
  });
});
