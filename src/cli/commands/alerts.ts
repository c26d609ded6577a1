import { existsSync } from 'node:fs';
import { alertsPath } from '../../alerts/alerts-component.js';
import { Outbox, type RouteCounters } from '../../alerts/outbox.js';
import type { AlertMessage } from '../../alerts/rollup.js';
import { deliver } from '../../alerts/sinks.js';
import { UsageError } from '../../errors.js';
import type { AlertRoute, Policy } from '../../policy/policy.js';
import { processAlive } from '../../state/state-store.js';
import { EXIT, type Context } from '../context.js';
import { loadAppliedPolicy } from './connections.js';

const sinkText = (r: AlertRoute) => {
  const s = r.sink;
  return s.kind === 'webhook' ? `webhook ${new URL(s.url).origin}${s.secretFile ? ' (signed)' : ''}` : s.kind === 'syslog' ? (s.transport === 'unix' ? `syslog unix://${s.path}` : `syslog ${s.transport}://${s.host}:${s.port}`) : s.kind === 'exec' ? `exec ${s.argv[0]}` : 'journal';
};

function appliedOrThrow(ctx: Context): Policy {
  const loaded = loadAppliedPolicy(ctx);
  if (!loaded) throw new UsageError('Nothing is applied (sluice apply POLICY first): the alert routes are the applied policy\'s');
  return loaded.policy;
}

/**
 * `sluice alerts status [--json]`: per route of the applied policy (and any
 * route with alerts still queued), what was delivered, retried and given up,
 * what waits and since when; and the suppressions, expired ones marked.
 * `sluice alerts test`: one test alert through every route's sink, now,
 * from this process; exit status 1 when any sink failed.
 * `sluice alerts daemon-failed`: see daemonFailed.
 */
export async function alerts(ctx: Context, sub: string | undefined): Promise<number> {
  if (sub === 'status') return status(ctx);
  if (sub === 'test') return test(ctx);
  if (sub === 'daemon-failed') return daemonFailed(ctx);
  throw new UsageError(`sluice alerts status | test | daemon-failed (got ${JSON.stringify(sub ?? '')})`);
}

function status(ctx: Context): number {
  const policy = appliedOrThrow(ctx);
  const file = alertsPath(ctx.state.dir);
  const outbox = existsSync(file) ? new Outbox(file) : null;
  const empty: RouteCounters = { delivered: 0, retried: 0, failed: 0, queued: 0, oldestQueued: null, lastError: null };
  try {
    const names = new Set([...policy.alerts.map((r) => r.name), ...(outbox?.routes() ?? [])]);
    const today = new Date().toISOString().slice(0, 10);
    const routes = [...names].map((name) => {
      const r = policy.alerts.find((x) => x.name === name);
      return { name, sink: r ? sinkText(r) : '(no longer in the policy)', on: r?.on ?? [], ...(outbox?.counters(name) ?? empty) };
    });
    const suppress = policy.suppress.map((s) => ({ rule: s.rule, destination: s.destination === null ? null : s.destination.kind === 'name' ? s.destination.pattern.text : 'address range', until: s.until, reason: s.reason, expired: s.until < today, line: s.line }));
    if (ctx.json) {
      ctx.result({ routes, suppress });
      return EXIT.ok;
    }
    if (routes.length === 0) ctx.say('No alert routes in the applied policy (alerts: in the policy; see README "Alerts").');
    for (const r of routes) {
      ctx.say(`${r.name}: ${r.sink}; on ${r.on.join(', ') || '-'}`);
      ctx.say(`  delivered ${r.delivered}, retried ${r.retried}, failed ${r.failed}, queued ${r.queued}${r.oldestQueued ? ` (oldest ${r.oldestQueued})` : ''}${r.lastError ? `; last error: ${r.lastError}` : ''}`);
    }
    for (const s of suppress) ctx.say(`suppress (line ${s.line}): ${s.rule ?? 'any rule'} to ${s.destination ?? 'anywhere'} until ${s.until}${s.expired ? ' EXPIRED' : ''}: ${s.reason}`);
    return EXIT.ok;
  } finally {
    outbox?.close();
  }
}

async function test(ctx: Context): Promise<number> {
  const policy = appliedOrThrow(ctx);
  if (policy.alerts.length === 0) throw new UsageError('No alert routes in the applied policy (alerts: in the policy; see README "Alerts")');
  const now = new Date().toISOString();
  const results = await Promise.all(
    policy.alerts.map(async (r) => {
      const m: AlertMessage = { route: r.name, trigger: r.on[0] ?? 'tamper', severity: 'info', count: 1, first: now, last: now, message: 'a test alert from sluice alerts test', text: `[sluice test] a test alert for route ${r.name} (at ${now})`, test: true };
      try {
        await deliver(r.sink, m, (message, fields) => process.stderr.write(`${JSON.stringify({ time: now, level: 'warn', message, ...fields })}\n`));
        return { route: r.name, sink: sinkText(r), ok: true as const };
      } catch (err) {
        return { route: r.name, sink: sinkText(r), ok: false as const, error: (err as Error).message || String(err) };
      }
    }),
  );
  if (ctx.json) ctx.result(results);
  else for (const r of results) ctx.say(`${r.route} (${r.sink}): ${r.ok ? 'delivered' : `FAILED: ${r.error}`}`);
  return results.every((r) => r.ok) ? EXIT.ok : EXIT.failed;
}

/**
 * `sluice alerts daemon-failed`: what systemd runs (sluice-failed.service,
 * the daemon unit's OnFailure=) when it stops restarting the daemon: a
 * `daemon-failed` alert, critical, to every route of the applied policy
 * that listens for it. It is stored in the alert database first, then sent
 * from this process, since no daemon is left to send it; what a sink does
 * not take stays queued for the daemon's next start. systemd's
 * MONITOR_SERVICE_RESULT, MONITOR_EXIT_CODE and MONITOR_EXIT_STATUS say
 * how the unit failed; the daemon's last state says why, when it knew.
 */
async function daemonFailed(ctx: Context, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const policy = appliedOrThrow(ctx);
  const routes = policy.alerts.filter((r) => r.on.includes('daemon-failed'));
  if (routes.length === 0) {
    ctx.say('No alert route of the applied policy listens for daemon-failed: nothing sent.');
    ctx.result([]);
    return EXIT.ok;
  }
  const ds = ctx.state.daemonState();
  const unit = env.MONITOR_UNIT ?? 'sluice.service';
  const how = [env.MONITOR_SERVICE_RESULT && `result ${env.MONITOR_SERVICE_RESULT}`, env.MONITOR_EXIT_CODE && `${env.MONITOR_EXIT_CODE} ${env.MONITOR_EXIT_STATUS ?? ''}`.trim()].filter(Boolean).join(', ');
  const why = ds?.error ? `; its last start failed: ${ds.error}` : ds ? `; it last said it was ${ds.state} (pid ${ds.pid}) at ${ds.at}` : '';
  const guard = policy.dns.guard ? ', DNS is not answered (the guard is down)' : '';
  const message = `the Sluice daemon (${unit}) failed and systemd stopped restarting it${how ? ` (${how})` : ''}${why}. The ruleset in the kernel stays in force${guard}, and no events are recorded until it is started again`;
  const now = new Date().toISOString();
  const detail = { unit, ...(env.MONITOR_SERVICE_RESULT ? { result: env.MONITOR_SERVICE_RESULT } : {}), ...(env.MONITOR_EXIT_CODE ? { exitCode: env.MONITOR_EXIT_CODE, exitStatus: env.MONITOR_EXIT_STATUS ?? null } : {}), ...(ds ? { daemon: ds } : {}) };
  const messages: AlertMessage[] = routes.map((r) => ({ route: r.name, trigger: 'daemon-failed', severity: 'critical', count: 1, first: now, last: now, message, text: `[sluice daemon-failed] ${message} (${now})`, detail }));
  const outbox = new Outbox(alertsPath(ctx.state.dir));
  try {
    const ids = outbox.enqueueMany(messages);
    // A daemon that runs after all sends what is queued itself (sending here too would send it twice).
    const running = ds !== null && (ds.state === 'running' || ds.state === 'starting') && processAlive(ds.pid);
    const results = await Promise.all(
      routes.map(async (r, i) => {
        if (running) return { route: r.name, sink: sinkText(r), ok: true as const, queued: true };
        try {
          await deliver(r.sink, messages[i] as AlertMessage, (m, fields) => process.stderr.write(`${JSON.stringify({ time: now, level: 'warn', message: m, ...fields })}\n`));
          outbox.delivered(ids[i] as number, r.name);
          return { route: r.name, sink: sinkText(r), ok: true as const, queued: false };
        } catch (err) {
          return { route: r.name, sink: sinkText(r), ok: false as const, queued: true, error: (err as Error).message || String(err) };
        }
      }),
    );
    if (ctx.json) ctx.result(results);
    else for (const r of results) ctx.say(`${r.route} (${r.sink}): ${r.ok ? (r.queued ? 'queued for the running daemon' : 'delivered') : `FAILED, kept queued for the daemon's next start: ${r.error}`}`);
    return results.every((r) => r.ok) ? EXIT.ok : EXIT.failed;
  } finally {
    outbox.close();
  }
}
