import type { RunFlow, RunReport } from './run.js';

/**
 * A run's report for people (stderr at exit, Markdown for a CI job summary)
 * and the policy that would allow what the run did (`--suggest`).
 */

function dest(f: Pick<RunFlow, 'dst' | 'dport' | 'proto'>): string {
  const host = f.dst.includes(':') ? `[${f.dst}]` : f.dst;
  return f.dport !== undefined ? `${host}:${f.dport}/${f.proto}` : `${host} ${f.proto}`;
}

function senders(f: { processes: RunFlow['processes'] }): string {
  return f.processes.length > 0 ? ` by ${f.processes.map((p) => `${p.comm}[${p.pid}]`).join(', ')}` : '';
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

function exitText(r: RunReport): string {
  return r.exit.signal ? `was killed by ${r.exit.signal}` : `exited ${r.exit.code}`;
}

const MAX_LINES = 50;

/** The short report printed when the command ends. */
export function formatRunReport(r: RunReport): string {
  const out: string[] = [];
  const blockedWord = r.mode === 'audit' ? 'would block' : 'blocked';
  out.push(`sluice run ${r.id}: ${JSON.stringify(r.command.join(' '))} ${exitText(r)} after ${(r.durationMs / 1000).toFixed(2)} s${r.mode === 'audit' ? ' (audit: nothing was blocked)' : ''}`);
  const refused = r.names.filter((n) => n.verdict !== 'allowed' && n.verdict !== 'error');
  const allowedNames = r.names.filter((n) => n.verdict === 'allowed');
  out.push(`  names: ${allowedNames.length} allowed, ${refused.length} ${blockedWord}`);
  for (const n of [...refused, ...allowedNames].slice(0, MAX_LINES)) {
    const tail = n.verdict === 'allowed' ? ` -> ${n.answers.slice(0, 4).join(', ') || '(no address)'}${n.answers.length > 4 ? ', ...' : ''}` : '';
    out.push(`    ${n.verdict.padEnd(11)} ${n.name} ${n.type}${n.rules.length ? ` (${n.rules.join(', ')})` : ''}${n.count > 1 ? ` x${n.count}` : ''}${tail}${senders(n)}`);
  }
  const reached = r.flows.filter((f) => f.verdict === 'allowed');
  const blocked = r.flows.filter((f) => f.verdict !== 'allowed');
  out.push(`  reached: ${plural(reached.length, 'destination')}`);
  for (const f of reached.slice(0, MAX_LINES)) out.push(`    ${dest(f)}${f.names.length ? ` ${f.names.join(', ')}` : ''} (${f.rule})${f.count > 1 ? ` x${f.count}` : ''}${senders(f)}`);
  out.push(`  ${blockedWord}: ${plural(r.summary.attemptsBlocked, 'attempt')}`);
  for (const f of blocked.slice(0, MAX_LINES)) out.push(`    ${dest(f)}${f.names.length ? ` ${f.names.join(', ')}` : ''} (${f.rule})${f.count > 1 ? ` x${f.count}` : ''}${senders(f)}`);
  if (!r.attribution.probes) out.push(`  note: flows are not named by process: ${r.attribution.reason ?? 'no kernel attribution'}`);
  if (r.lostRecords > 0) out.push(`  note: the kernel could not deliver ${plural(r.lostRecords, 'record')}; the lists above may miss some`);
  if (!r.ipv6) out.push('  note: this run had no IPv6');
  return out.join('\n');
}

function mdCell(s: string): string {
  return s.replace(/[|\\`*_<>[\]]/g, (c) => `\\${c}`).replace(/[\r\n]+/g, ' ');
}

/** The report as Markdown (a CI job summary). */
export function formatRunMarkdown(r: RunReport): string {
  const blockedWord = r.mode === 'audit' ? 'Would block' : 'Blocked';
  const out = [`### sluice run: \`${r.command.join(' ').replace(/`/g, "'")}\` ${exitText(r)}`, ''];
  out.push(`${r.summary.namesAllowed} names allowed, ${r.summary.namesBlocked} refused; ${r.summary.destinationsReached} destinations reached; ${r.summary.attemptsBlocked} attempts ${blockedWord.toLowerCase()}.`, '');
  const names = r.names.filter((n) => n.verdict !== 'error');
  if (names.length > 0) {
    out.push('| Name | Type | Verdict | Rule | Answers | Asked by |', '|---|---|---|---|---|---|');
    for (const n of names) out.push(`| ${mdCell(n.name)} | ${n.type} | ${n.verdict} | ${mdCell(n.rules.join(', '))} | ${mdCell(n.answers.join(', '))} | ${mdCell(n.processes.map((p) => `${p.comm}[${p.pid}]`).join(', '))} |`);
    out.push('');
  }
  if (r.flows.length > 0) {
    out.push('| Verdict | Destination | Names | Rule | Process | Count |', '|---|---|---|---|---|---|');
    for (const f of r.flows) out.push(`| ${f.verdict} | ${mdCell(dest(f))} | ${mdCell(f.names.join(', '))} | ${mdCell(f.rule)} | ${mdCell(f.processes.map((p) => `${p.comm}[${p.pid}]`).join(', '))} | ${f.count} |`);
    out.push('');
  }
  return out.join('\n');
}

/**
 * A policy allowing exactly what the run did: each name it resolved (and
 * connected to) with the ports it used there; addresses it reached without a
 * name as addresses; names it asked for but never connected to only in a
 * comment (no port was seen to allow). JSON-quoted values, so no name can change the
 * YAML's shape.
 */
export function suggestRunPolicy(r: RunReport): string {
  const byName = new Map<string, Set<string>>();
  const byAddr = new Map<string, Set<string>>();
  for (const f of r.flows) {
    const port = f.dport !== undefined ? `${f.dport}/${f.proto}` : f.proto === 'icmp' || f.proto === 'icmpv6' ? f.proto : undefined;
    const targets = f.names.length > 0 ? f.names.map((n) => [byName, n] as const) : [[byAddr, f.dst] as const];
    for (const [map, key] of targets) {
      let s = map.get(key);
      if (!s) map.set(key, (s = new Set()));
      if (port) s.add(port);
    }
  }
  const unused = [...new Set(r.names.filter((n) => n.verdict !== 'error' && !byName.has(n.name)).map((n) => n.name))].sort();
  const lines = [`# Suggested by sluice run ${r.id} for: ${r.command.join(' ').replace(/[\r\n]/g, ' ')}`, '# Review before use: it allows exactly what this run did.', 'rules:'];
  let i = 0;
  const emit = (to: string, ports: Set<string>) => {
    i++;
    lines.push(`  - name: ${JSON.stringify(`run-${i}`)}`, `    to: [${JSON.stringify(to)}]`);
    if (ports.size > 0) lines.push(`    ports: [${[...ports].sort().map((p) => JSON.stringify(p)).join(', ')}]`);
  };
  for (const [name, ports] of [...byName].sort((a, b) => a[0].localeCompare(b[0]))) emit(name, ports);
  for (const [addr, ports] of [...byAddr].sort((a, b) => a[0].localeCompare(b[0]))) emit(addr, ports);
  if (i === 0) lines[lines.length - 1] = 'rules: []';
  // Asked for, never connected to: no port to allow; listed for the reviewer, not allowed.
  if (unused.length > 0) lines.push(`# Resolved but never connected to (not allowed above): ${unused.map((n) => JSON.stringify(n)).join(', ')}`);
  return `${lines.join('\n')}\n`;
}
