import { controlCall, controlStream } from '../../runtime/control-server.js';
import type { DnsQueryEvent } from '../../events/channels.js';
import { EXIT, type Context } from '../context.js';
import { onStop } from '../output.js';
import { containerLabel } from '../../system/containers.js';

const TYPES: Record<number, string> = { 1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV', 64: 'SVCB', 65: 'HTTPS', 255: 'ANY' };
const RCODES: Record<number, string> = { 0: 'NOERROR', 1: 'FORMERR', 2: 'SERVFAIL', 3: 'NXDOMAIN', 4: 'NOTIMP', 5: 'REFUSED' };

function line(e: DnsQueryEvent): string {
  const time = new Date(e.time).toISOString().slice(11, 23);
  const who = e.process ? `${e.process.comm ?? e.process.exe ?? '?'}[${e.process.pid}]` : `${e.client.address}:${e.client.port}`;
  const what = e.verdict === 'allowed' ? (e.answers.join(' ') || RCODES[e.rcode] || String(e.rcode)) : (e.detail ?? RCODES[e.rcode] ?? '');
  const dropped = e.dropped.length > 0 ? ` (dropped ${e.dropped.map((d) => `${d.address}: ${d.why}`).join(', ')})` : '';
  const container = e.process?.container ? ` container=${containerLabel(e.process.container)}` : '';
  return `${time} ${e.verdict.padEnd(11)} ${(TYPES[e.type] ?? String(e.type)).padEnd(5)} ${e.name} ${e.rules.length ? `[${e.rules.join(',')}] ` : ''}-> ${what}${dropped}  ${who} ${e.transport}${container}`;
}

/** `sluice dns [--follow] [--json] [--limit N]`: recent queries the guard answered, from the daemon. */
export async function dns(ctx: Context, args: { follow: boolean; limit?: number }): Promise<number> {
  // Range-checked by the command line (spec.ts: 1 to 10,000, what the daemon serves).
  const limit = args.limit ?? 100;
  const recent = (await controlCall(ctx.state.controlSocket, 'dns.recent', { limit })) as DnsQueryEvent[];
  if (ctx.json && !args.follow) ctx.result(recent);
  else for (const e of recent) process.stdout.write(`${ctx.json ? JSON.stringify(e) : line(e)}\n`);
  if (!args.follow) {
    if (!ctx.json && recent.length === 0) ctx.say('No DNS queries recorded yet.');
    return EXIT.ok;
  }
  const { done, stop } = await controlStream(ctx.state.controlSocket, 'dns.follow', {}, (v) => {
    const e = v as DnsQueryEvent;
    process.stdout.write(`${ctx.json ? JSON.stringify(e) : line(e)}\n`);
  });
  const off = onStop(stop);
  await done;
  off();
  return EXIT.ok;
}
