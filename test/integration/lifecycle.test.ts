/**
 * Integration: the apply lifecycle against the real kernel. Atomic replace,
 * confirm and rollback, errors that never reach the kernel, drift, off, and
 * other tables in the namespace never touched.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, beforeEach, describe, it } from 'node:test';
import { waitFor } from '../support/monitor-helpers.js';
import { HOSTS, World } from '../world/world.js';

const t = (h: string, port: number) => `tcp:${h.includes(':') ? `[${h}]` : h}:${port}`;

const OTHER_TABLES = `
table ip filter {
  set blocked { type ipv4_addr; elements = { 198.18.9.9 }; }
  chain output { type filter hook output priority 10; policy accept; ip daddr @blocked counter drop; }
}
table inet other {
  chain postrouting { type filter hook postrouting priority 0; policy accept; meta l4proto udp counter accept; }
}
`;

describe('integration: apply lifecycle', () => {
  let w: World;
  let policyA: string;
  let policyB: string;
  let others: string;

  before(async () => {
    w = await World.create();
    policyA = w.policy(`mode: enforce\nrules:\n  - name: api\n    to: [${HOSTS.api4}]\n    ports: [443/tcp]\n`, 'a.yaml');
    policyB = w.policy(`mode: enforce\nrules:\n  - name: other\n    to: [${HOSTS.other4}]\n    ports: [443/tcp]\n`, 'b.yaml');
    await w.nft(['-f', '-'], OTHER_TABLES);
    others = await otherTables();
  });
  after(async () => {
    await w?.destroy();
  });
  beforeEach(async () => {
    await w.sluice(['off']);
  });

  /** The tables that are not Sluice's, as nft prints them (counters stripped: traffic moves them). */
  async function otherTables(): Promise<string> {
    const ip = await w.nft(['-s', 'list', 'table', 'ip', 'filter']);
    const inet = await w.nft(['-s', 'list', 'table', 'inet', 'other']);
    return ip + inet;
  }

  async function sluiceTableExists(): Promise<boolean> {
    return (await w.nft(['list', 'tables'])).includes('table inet sluice');
  }

  it('plan, apply, plan again: the live table becomes exactly the plan', async () => {
    const before = await w.sluiceJson<{ live: string }>(['plan', policyA]);
    assert.equal(before.json.live, 'absent');
    const applied = await w.sluiceJson<{ applied: boolean; verified: boolean }>(['apply', policyA]);
    assert.equal(applied.code, 0);
    assert.equal(applied.json.verified, true, 'apply reads the table back and finds what it wrote');
    const after = await w.sluiceJson<{ live: string; diff: string[] }>(['plan', policyA]);
    assert.equal(after.json.live, 'same');
    const other = await w.sluiceJson<{ live: string; diff: string[] }>(['plan', policyB]);
    assert.equal(other.json.live, 'differs');
    assert.ok(other.json.diff.some((l) => l.startsWith('+') && l.includes(HOSTS.other4)), 'the diff shows the new address');
    assert.ok(other.json.diff.some((l) => l.startsWith('-') && l.includes(HOSTS.api4)), 'and the removed one');
    const st = await w.sluiceJson<{ state: string; mode: string }>(['status']);
    assert.equal(st.code, 0);
    assert.equal(st.json.state, 'live');
    assert.equal(st.json.mode, 'enforce');
    assert.equal(await otherTables(), others, 'other tables untouched by apply');
  });

  it('a policy with an error is refused with FILE:LINE:COL and the live ruleset stays exactly as it was', async () => {
    assert.equal((await w.sluice(['apply', policyA])).code, 0);
    const snapshot = await w.nft(['-s', 'list', 'ruleset']);
    const bad = w.policy(`mode: enforce\nrules:\n  - name: api\n    to: [${HOSTS.api4}, 198.18.1.0/33]\n    ports: [443/tcp]\n`, 'bad.yaml');
    const r = await w.sluice(['apply', bad]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /bad\.yaml:4:\d+: prefix length must be 0 to 32: "198\.18\.1\.0\/33"/);
    assert.equal(await w.nft(['-s', 'list', 'ruleset']), snapshot, 'nothing in the kernel changed');
    const reach = await w.reach([t(HOSTS.api4, 443), t(HOSTS.other4, 443)]);
    assert.deepEqual(reach, { [t(HOSTS.api4, 443)]: true, [t(HOSTS.other4, 443)]: false });
  });

  it('apply --confirm rolls back to the previous ruleset when not confirmed in time', async () => {
    assert.equal((await w.sluice(['apply', policyA])).code, 0);
    const r = await w.sluice(['apply', policyB, '--confirm', '5']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /sluice confirm/);
    assert.deepEqual(await w.reach([t(HOSTS.other4, 443)]), { [t(HOSTS.other4, 443)]: true }, 'B is live during the window');
    const pending = await w.sluiceJson<{ pending: { deadline: string } | null }>(['status']);
    assert.ok(pending.json.pending, 'status shows the pending confirmation');
    // Polled until the rollback is recorded (it must come after the deadline, never before).
    const deadline = Date.parse(pending.json.pending.deadline);
    await waitFor('the rollback', async () => ((await w.sluiceJson<{ rolledBack: unknown }>(['status'])).json.rolledBack ? true : undefined), deadline - Date.now() + 20_000);
    assert.ok(Date.now() >= deadline, 'not rolled back before the deadline');
    const plan = await w.sluiceJson<{ live: string }>(['plan', policyA]);
    assert.equal(plan.json.live, 'same', 'A is back, exactly');
    assert.deepEqual(await w.reach([t(HOSTS.api4, 443), t(HOSTS.other4, 443)]), { [t(HOSTS.api4, 443)]: true, [t(HOSTS.other4, 443)]: false });
    const st = await w.sluiceJson<{ state: string; pending: unknown; rolledBack: { restored: string } | null }>(['status']);
    assert.equal(st.json.state, 'live', 'the state directory follows the rollback');
    assert.equal(st.json.pending, null);
    assert.match(st.json.rolledBack?.restored ?? '', /^[0-9a-f]{64}$/, 'status says a rollback happened, and to what');
    assert.match((await w.sluice(['status'])).stdout, /Last change: rolled back at .*not confirmed in time/);
    assert.equal(await otherTables(), others, 'other tables untouched by the rollback');
  });

  it('sluice confirm keeps the new ruleset past the deadline', async () => {
    assert.equal((await w.sluice(['apply', policyA])).code, 0);
    assert.equal((await w.sluice(['apply', policyB, '--confirm', '2'])).code, 0);
    const c = await w.sluice(['confirm']);
    assert.equal(c.code, 0, c.stderr);
    // Nothing must happen: wait past where the deadline was, with margin for the timer.
    await sleep(2000 + 1500);
    const plan = await w.sluiceJson<{ live: string }>(['plan', policyB]);
    assert.equal(plan.json.live, 'same');
    assert.equal((await w.sluiceJson<{ rolledBack: unknown }>(['status'])).json.rolledBack, null, 'no rollback to report');
    const again = await w.sluice(['confirm']);
    assert.equal(again.code, 1, 'nothing left to confirm');
  });

  it('an unconfirmed first apply rolls back to no table at all', async () => {
    assert.equal((await w.sluice(['apply', policyA, '--confirm', '1'])).code, 0);
    assert.equal(await sluiceTableExists(), true);
    await waitFor('the rollback to no table', async () => ((await sluiceTableExists()) ? undefined : true), 20_000);
    assert.equal((await w.sluiceJson<{ state: string; rolledBack: { restored: string } | null }>(['status'])).json.rolledBack?.restored, 'no table');
    assert.equal(await otherTables(), others);
  });

  it('off removes only the Sluice table, and is idempotent', async () => {
    assert.equal((await w.sluice(['apply', policyA])).code, 0);
    const off = await w.sluiceJson<{ removed: boolean }>(['off']);
    assert.equal(off.json.removed, true);
    assert.equal(await sluiceTableExists(), false);
    assert.equal(await otherTables(), others, 'other tables untouched by off');
    const again = await w.sluiceJson<{ removed: boolean }>(['off']);
    assert.equal(again.code, 0);
    assert.equal(again.json.removed, false);
    assert.deepEqual(await w.reach([t(HOSTS.other4, 443)]), { [t(HOSTS.other4, 443)]: true }, 'outbound is open again');
  });

  it('tampering with the table shows as drift; apply restores it', async () => {
    assert.equal((await w.sluice(['apply', policyA])).code, 0);
    await w.nft(['insert', 'rule', 'inet', 'sluice', 'output', 'ip', 'daddr', HOSTS.other4, 'accept']);
    const st = await w.sluiceJson<{ state: string; drift: string[] }>(['status']);
    assert.equal(st.code, 3, 'status exits 3 when drifted');
    assert.equal(st.json.state, 'drifted');
    assert.ok(st.json.drift.some((l) => l.startsWith('+') && l.includes(HOSTS.other4)), `drift names the inserted rule: ${st.json.drift.join('\n')}`);
    assert.equal((await w.sluice(['apply', policyA])).code, 0);
    assert.equal((await w.sluiceJson<{ state: string }>(['status'])).json.state, 'live');
  });

  it('the kernel holds what Sluice says: nft, an independent reader, sees the same sets and rules', async () => {
    const p = w.policy(
      `mode: enforce\nrules:\n  - name: web\n    to: [${HOSTS.api4}, 198.18.4.0/24]\n    ports: [443/tcp, 60000-61000/udp]\n    users: [root, 65534]\n    interfaces: [eth0, "wg*"]\n`,
      'oracle.yaml',
    );
    assert.equal((await w.sluice(['apply', p])).code, 0);
    const text = await w.nft(['list', 'table', 'inet', 'sluice']);
    assert.match(text, /set r_web_u \{\s+type uid[\s\S]*?elements = \{ 0, 65534 \}/, 'uids in host byte order, as nft reads them');
    assert.match(text, /elements = \{ "eth0",\s+"wg\*" \}/, 'interface wildcard');
    assert.match(text, /set r_web_p \{\s+type inet_proto \. inet_service\s+size 1\s+comment "rule web"\s+elements = \{ tcp \. 443 \}/, 'single ports: a hash set');
    assert.match(text, /set r_web_pu \{\s+type inet_service\s+flags interval\s+comment "rule web"\s+elements = \{ 60000-61000 \}/, 'UDP port ranges: an interval set of ports');
    assert.match(text, /udp dport @r_web_pu/, 'looked up behind the protocol (nft prints meta l4proto udp th dport as udp dport)');
    assert.match(text, /198\.18\.4\.0\/24/);
    assert.match(text, /policy drop;/);
    assert.match(text, /log prefix "sluice:B:#default " group 7331/);
  });

  it('100,000 addresses apply in one transaction and are enforced', async () => {
    // 100,000 consecutive addresses from 198.18.64.0, clear of the world's own hosts.
    const base = 0xc6124000;
    const addrs = Array.from({ length: 100_000 }, (_, i) => {
      const a = base + i;
      return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
    });
    addrs[addrs.length - 1] = HOSTS.api4;
    const p = w.policy(`mode: enforce\nrules:\n  - name: big\n    ports: [443/tcp]\n    to:\n${addrs.map((a) => `      - ${a}\n`).join('')}`, 'big.yaml');
    const r = await w.sluiceJson<{ elements: number; verified: boolean }>(['apply', p]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.json.elements >= 100_000, `elements: ${r.json.elements}`);
    assert.equal(r.json.verified, true);
    assert.deepEqual(await w.reach([t(HOSTS.api4, 443), t(HOSTS.other4, 443), t(HOSTS.api4, 80)]), {
      [t(HOSTS.api4, 443)]: true,
      [t(HOSTS.other4, 443)]: false,
      [t(HOSTS.api4, 80)]: false,
    });
  });

  it('explain matches what the kernel does, connection by connection', async () => {
    const p = w.policy(
      `mode: enforce\nrules:\n  - name: api\n    to: [198.18.1.0/24]\n    ports: [443/tcp, 8080/tcp]\n  - name: meta\n    action: deny\n    to: [${HOSTS.meta4}]\n  - name: v6\n    to: [${HOSTS.api6}]\n    ports: [80/tcp]\n`,
      'explain.yaml',
    );
    assert.equal((await w.sluice(['apply', p])).code, 0);
    const cases: [string, number][] = [];
    for (const h of [HOSTS.api4, HOSTS.api4b, HOSTS.meta4, HOSTS.other4, HOSTS.api6, HOSTS.other6]) for (const port of [443, 80, 8080]) cases.push([h, port]);
    const reach = await w.reach(cases.map(([h, port]) => t(h, port)), { timeoutMs: 800 });
    for (const [h, port] of cases) {
      const ex = await w.sluiceJson<{ verdict: string; summary: string }>(['explain', h, `${port}/tcp`, p]);
      assert.equal(ex.json.verdict === 'allow', reach[t(h, port)], `${h} ${port}: explain says ${ex.json.summary}, kernel says ${reach[t(h, port)]}`);
    }
    // This host's own address is admitted before any rule (fib daddr type local); a neighbour's is not.
    const own = await w.sluiceJson<{ verdict: string; decidedBy: { kind: string } }>(['explain', '198.18.0.2', '5432/tcp', p]);
    assert.deepEqual([own.json.verdict, own.json.decidedBy.kind], ['allow', 'local']);
    const neighbour = await w.sluiceJson<{ verdict: string; decidedBy: { kind: string } }>(['explain', '198.18.0.3', '5432/tcp', p]);
    assert.deepEqual([neighbour.json.verdict, neighbour.json.decidedBy.kind], ['block', 'default']);
  });
});
