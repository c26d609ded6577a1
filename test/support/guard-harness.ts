/**
 * A DnsGuard over the in-memory netfilter and a fake upstream, for the unit
 * tests of the guard's decision path: what the client receives, what the
 * kernel's sets hold, what the guard recorded (events, stats).
 */
import { TABLE_NAME } from '../../src/compile/ruleset.js';
import type { DnsQueryEvent } from '../../src/events/channels.js';
import type { Message, Question, RR } from '../../src/dns/dns-message.js';
import { DnsGuard, type GuardDeps } from '../../src/dns/dns-guard.js';
import { DomainMatcher } from '../../src/dns/domain-matcher.js';
import { LearnedState } from '../../src/dns/learned-state.js';
import { RebindingFilter } from '../../src/dns/rebinding.js';
import { SetWriter, type SetWrite } from '../../src/dns/set-writer.js';
import { FakeNetfilter } from '../../src/netfilter/fake-netfilter.js';
import { formatAddr, parseAddr } from '../../src/net/ip.js';
import type { Ruleset } from '../../src/compile/ruleset.js';
import type { Policy } from '../../src/policy/policy.js';
import { compileFrom } from './fixtures.js';

/** What the fake upstream answers: records, or the parts of a reply that matter. */
export interface UpstreamReply {
  answers?: RR[];
  authorities?: RR[];
  rcode?: number;
  tc?: boolean;
  ad?: boolean;
}

/** The upstream's reply to `q` as the guard receives it from its UpstreamClient. */
export function upstreamMessage(q: Question, r: UpstreamReply): Message {
  return {
    id: 1,
    flags: { qr: true, opcode: 0, aa: true, tc: r.tc ?? false, rd: true, ra: true, ad: r.ad ?? false, cd: false, rcode: r.rcode ?? 0 },
    questions: [q],
    answers: r.answers ?? [],
    authorities: r.authorities ?? [],
    additionals: [],
  };
}

export interface GuardSetupOptions {
  /** Encrypted-DNS endpoint names (refused unless a rule names them exactly). */
  encrypted?: string[];
  /** The kernel's size of a DNS-filled set (the fake netfilter refuses more). */
  setCapacity?: number;
  /** This host's own addresses (the rebinding filter drops them). */
  local?: string[];
  /** A clock the test moves (ms); without it the guard reads Date.now. */
  clock?: { now: number };
  identify?: GuardDeps['identify'];
}

/** The guard for `policyText`; `answer` plays the upstream (an Error: it fails). */
export function guardSetup(policyText: string, answer: (q: Question) => RR[] | UpstreamReply | Error = () => [], opts: GuardSetupOptions = {}) {
  const { policy, ruleset } = compileFrom(policyText);
  const nf = new FakeNetfilter(opts.setCapacity ? { dynamicSetSize: opts.setCapacity } : {});
  nf.replace(ruleset);
  /** The questions the upstream was asked, with the DO bit the guard asked with. */
  const asked: (Question & { dnssecOk: boolean })[] = [];
  const events: DnsQueryEvent[] = [];
  /** Every non-empty batch of set writes, in order. */
  const writes: SetWrite[][] = [];
  const learned = new LearnedState();
  const writer = new SetWriter(nf, TABLE_NAME);
  const clock = opts.clock;
  const upstream: GuardDeps['upstream'] = {
      query: async (q, flags): Promise<Message> => {
        asked.push({ ...q, dnssecOk: flags.dnssecOk });
        const a = answer(q);
        if (a instanceof Error) throw a;
        return upstreamMessage(q, Array.isArray(a) ? { answers: a } : a);
      },
  };
  const deps = (p: Policy, rs: Ruleset, l: LearnedState, encrypted = opts.encrypted ?? []): GuardDeps => ({
    policy: p,
    matcher: new DomainMatcher(p, encrypted),
    rebinding: new RebindingFilter(p, (opts.local ?? []).map((a) => parseAddr(a)).filter((a) => a !== null)),
    dynamicSets: new Set(rs.sets.filter((x) => x.dynamic).map((x) => x.name)),
    ...(opts.setCapacity ? { setCapacity: opts.setCapacity } : {}),
    upstream,
    writer: {
      write: (w: SetWrite[]) => {
        if (w.length > 0) writes.push(w);
        return writer.write(w);
      },
    },
    learned: l,
    onEvent: (e) => events.push(e),
    ...(clock ? { clock: () => clock.now } : {}),
    ...(opts.identify ? { identify: opts.identify } : {}),
  });
  const guard = new DnsGuard(deps(policy, ruleset, learned));
  /**
   * A reload onto `text`, as the guard component does it: the kernel's table
   * replaced (learned elements carried), a new learned record rebuilt from
   * the kernel, new dependencies. `newUpstream`: another upstream client
   * (the upstreams changed); `encrypted`: another encrypted-DNS list.
   */
  const reload = (text: string, o: { newUpstream?: boolean; encrypted?: string[] } = {}) => {
    const next = compileFrom(text);
    nf.replace(next.ruleset, { carryDynamic: true });
    const now = clock ? clock.now : Date.now();
    const kept = (nf.read(TABLE_NAME, { elements: 'dynamic' })?.ruleset.sets ?? []).flatMap((s) =>
      s.elements.flatMap((e) => (e.t === 'addr' ? [{ set: s.name, family: e.family, addr: e.start, expiresAt: now + (e.timeoutMs ?? 0) }] : [])),
    );
    const l = new LearnedState();
    l.adoptKernel(kept);
    const d = deps(next.policy, next.ruleset, l, o.encrypted);
    guard.deps = o.newUpstream ? { ...d, upstream: { query: (q, f) => upstream.query(q, f) } } : d;
  };
  /** The addresses a DNS-filled set holds, as text. */
  const set = (name: string): string[] =>
    nf
      .read(TABLE_NAME, { elements: 'dynamic' })
      ?.ruleset.sets.find((s) => s.name === name)
      ?.elements.map((e) => (e.t === 'addr' ? formatAddr(e.family, e.start) : '?')) ?? [];
  /** Every element of every DNS-filled set. */
  const dyn = () => nf.read(TABLE_NAME, { elements: 'dynamic' })?.ruleset.sets.filter((s) => s.dynamic).flatMap((s) => s.elements.map((e) => ({ set: s.name, e }))) ?? [];
  return { guard, nf, asked, events, writes, learned, set, dyn, policy, reload };
}
