import { rulesetFlowMark, withEpoch } from '../../compile/flow-mark.js';
import { renderRuleset } from '../../compile/render-nft.js';
import { TABLE_NAME } from '../../compile/ruleset.js';
import { formatIssue } from '../../errors.js';
import { diffRulesets, sameRuleset } from '../../netfilter/compare-ruleset.js';
import type { LiveTable } from '../../netfilter/netfilter.js';
import { EXIT, type Context } from '../context.js';

/** `sluice plan [POLICY]`: the ruleset that would be applied, and its diff against the live table. */
export function plan(ctx: Context, args: { policy?: string; full?: boolean }): number {
  const p = ctx.loadPolicy(args.policy);
  const compiled = ctx.compile(p);
  const { warnings } = compiled;
  let ruleset = compiled.ruleset;
  let live: LiveTable | null = null;
  let liveState: 'absent' | 'same' | 'differs' | 'unreadable' = 'absent';
  let unreadable: string | undefined;
  try {
    live = ctx.netfilter().read(TABLE_NAME);
    // Shown in the live epoch: the epoch is what an apply chooses, not a difference of meaning.
    const epoch = ctx.state.applied()?.epoch ?? (live ? rulesetFlowMark(live.ruleset)?.epoch : undefined);
    if (epoch !== undefined) ruleset = withEpoch(ruleset, epoch);
    liveState = live === null ? 'absent' : sameRuleset(ruleset, live) ? 'same' : 'differs';
  } catch (err) {
    liveState = 'unreadable';
    unreadable = (err as Error).message;
  }
  const maxElements = args.full ? undefined : 20;
  const rendered = renderRuleset(ruleset, maxElements !== undefined ? { maxElements } : {});
  const diff = liveState === 'unreadable' ? [] : diffRulesets(live?.ruleset ?? null, ruleset, maxElements !== undefined ? { maxElements } : {});

  for (const w of p.warnings) ctx.say(formatIssue(w));
  for (const w of warnings) ctx.say(`warning: ${w}`);
  ctx.say(`# Ruleset for ${p.file} (${p.mode} mode, sha256 ${p.sha256.slice(0, 16)})`);
  ctx.say(rendered.trimEnd());
  ctx.say();
  if (liveState === 'unreadable') ctx.say(`# Cannot read the live table: ${unreadable}`);
  else if (liveState === 'absent') ctx.say('# Live: no Sluice table. Applying creates it.');
  else if (liveState === 'same') ctx.say('# Live: identical. Applying changes nothing.');
  else {
    ctx.say('# Live differs; applying makes these changes (- live, + planned):');
    for (const line of diff) ctx.say(line);
    for (const a of live?.anomalies ?? []) ctx.say(`# live table has something Sluice did not write: ${a}`);
  }
  ctx.result({
    file: p.file,
    sha256: p.sha256,
    mode: p.mode,
    live: liveState,
    warnings: [...p.warnings.map((w) => w.message), ...warnings],
    ruleset: rendered,
    diff,
    anomalies: live?.anomalies ?? [],
  });
  return EXIT.ok;
}
