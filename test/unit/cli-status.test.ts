/**
 * `sluice status` exit statuses, with a temporary state directory and the fake
 * kernel: 0 when the applied policy is live, 3 when it is not what the user
 * kept, including a confirmation still pending past its deadline (as the
 * help and the README say).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { confirm } from '../../src/cli/commands/confirm.js';
import { status } from '../../src/cli/commands/status.js';
import { Context, EXIT } from '../../src/cli/context.js';
import { FakeNetfilter } from '../../src/netfilter/fake-netfilter.js';
import { commitTable } from '../../src/state/commit-table.js';
import { StateStore } from '../../src/state/state-store.js';
import { compileFrom } from '../support/fixtures.js';

const base = mkdtempSync(join(tmpdir(), 'sluice-status-'));
after(() => rmSync(base, { recursive: true, force: true }));
let n = 0;

/** A Context that keeps what a command says and its --json result. */
class Captured extends Context {
  said: string[] = [];
  data: Record<string, unknown> | undefined;
  override say(text = ''): void {
    this.said.push(text);
  }
  override result(data: unknown): void {
    this.data = data as Record<string, unknown>;
  }
}

const TEXT = 'mode: enforce\nessentials: false\nrules:\n  - name: api\n    to: [198.18.0.1]\n    ports: [443/tcp]\n';

/** A state directory and fake kernel where `apply` ran, with `--confirm` whose deadline is `confirmIn` seconds away. */
function applied(confirmIn?: number): { ctx: Captured; nf: FakeNetfilter } {
  const state = new StateStore(join(base, `s${++n}`));
  const nf = new FakeNetfilter();
  const { policy, ruleset } = compileFrom(TEXT, 'p.yaml');
  const deadline = confirmIn === undefined ? undefined : new Date(Date.now() + confirmIn * 1000).toISOString();
  commitTable(nf, state, {
    event: 'apply',
    ruleset,
    policy: { policyFile: policy.file, sha256: policy.sha256, mode: policy.mode, warnings: [], bytes: Buffer.from(TEXT) },
    pending: deadline === undefined ? 'clear' : (v) => ({ token: `t${n}`, deadline, previous: null, previousState: v.applied }),
  });
  return { ctx: new Captured({ json: false, state, netfilter: nf }), nf };
}

describe('unit: sluice status exit status', () => {
  it('live, nothing pending: 0', () => {
    const { ctx } = applied();
    assert.equal(status(ctx), EXIT.ok);
    assert.equal(ctx.data?.state, 'live');
    assert.equal(ctx.data?.pending, null);
  });

  it('a confirmation pending within its deadline: 0, and the deadline is shown', () => {
    const { ctx } = applied(600);
    assert.equal(status(ctx), EXIT.ok);
    assert.equal(ctx.data?.state, 'live');
    assert.deepEqual({ ...(ctx.data?.pending as object), deadline: undefined }, { deadline: undefined, overdue: false, timerAlive: false });
    assert.ok(ctx.said.some((l) => /run `sluice confirm` before/.test(l)));
  });

  it('a confirmation pending past its deadline: 3, though the table is live', () => {
    const { ctx } = applied(-5);
    assert.equal(status(ctx), EXIT.notLive);
    assert.equal(ctx.data?.state, 'live', 'the kernel holds the applied policy: only the deadline makes it not live');
    assert.equal((ctx.data?.pending as { overdue: boolean }).overdue, true);
    assert.ok(ctx.said.some((l) => /deadline .* passed/.test(l)), ctx.said.join('\n'));
  });

  it('confirmed, even late: 0 again', () => {
    const { ctx } = applied(-5);
    assert.equal(confirm(ctx), EXIT.ok);
    assert.equal(status(ctx), EXIT.ok);
    assert.equal(ctx.data?.pending, null);
  });

  it('drifted: 3 (the existing rule, as a control)', () => {
    const { ctx, nf } = applied();
    nf.replace(compileFrom(TEXT.replace('198.18.0.1', '198.18.0.2'), 'p.yaml').ruleset);
    assert.equal(status(ctx), EXIT.notLive);
    assert.equal(ctx.data?.state, 'drifted');
  });
});
