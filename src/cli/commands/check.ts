import { formatIssue, PolicyError } from '../../errors.js';
import { EXIT, type Context } from '../context.js';

/** `sluice check [POLICY]`: validate; every problem as FILE:LINE:COL: message. */
export function check(ctx: Context, args: { policy?: string }): number {
  try {
    const p = ctx.loadPolicy(args.policy);
    const { ruleset, warnings } = ctx.compile(p);
    const elements = ruleset.sets.reduce((n, s) => n + s.elements.length, 0);
    for (const w of p.warnings) ctx.say(formatIssue(w));
    for (const w of warnings) ctx.say(`${p.file}: warning: ${w}`);
    ctx.say(`${p.file}: OK: ${p.rules.length} rules, ${p.mode} mode, ${ruleset.sets.length} sets, ${elements} elements`);
    ctx.result({
      ok: true,
      file: p.file,
      sha256: p.sha256,
      mode: p.mode,
      rules: p.rules.length,
      sets: ruleset.sets.length,
      elements,
      errors: [],
      warnings: [...p.warnings, ...warnings.map((message) => ({ file: p.file, message, severity: 'warning' }))],
    });
    return EXIT.ok;
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err;
    const errors = err.issues.filter((i) => i.severity === 'error');
    const warnings = err.issues.filter((i) => i.severity === 'warning');
    for (const i of err.issues) ctx.say(formatIssue(i));
    ctx.say(`${errors.length} error${errors.length === 1 ? '' : 's'}: nothing applied`);
    ctx.result({ ok: false, errors, warnings });
    return EXIT.failed;
  }
}
