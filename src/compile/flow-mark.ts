import { buildTableComment, parseTableComment } from './kernel-names.js';
import type { Ruleset, Stmt } from './ruleset.js';

/**
 * The conntrack-mark bits Sluice writes on every flow it admits, so a flow
 * can never outlive the policy, or be borrowed by another identity than the
 * one, that admitted it.
 *
 * Sluice owns 16 contiguous bits of the ct mark (`flows.ct_mark_mask`,
 * default 0xffff0000; other software keeps the rest). Within them:
 *
 *   high 8 bits: the policy epoch, 1-255 (0 never occurs: an unmarked flow)
 *   low 8 bits:  the admitting rule's identity group: 0 for rules with no
 *                user, service or interface condition, 1-255 for each rule
 *                with one (its identity is re-checked on every packet)
 *
 * Only packets of flows whose mark carries the live epoch skip the rules;
 * any other packet of an established flow (admitted under an earlier policy,
 * in audit mode, before Sluice was loaded, or whose identity no longer
 * matches) is judged again as if it were new. Every replacement of the
 * table with a different meaning takes the next epoch.
 */
export interface FlowMarkLayout {
  /** The 16 ct mark bits Sluice owns. */
  mask: number;
  /** Position of the lowest of them. */
  shift: number;
}

export const MAX_EPOCH = 255;
export const MAX_IDENTITY_GROUPS = 255;

/** The layout for a mask of 16 contiguous bits (validated by the policy loader). */
export function flowMarkLayout(mask: number): FlowMarkLayout {
  const m = mask >>> 0;
  const shift = m === 0 ? 0 : 31 - Math.clz32(m & -m);
  return { mask: m, shift };
}

/** The mark value (within the layout's bits) of a flow admitted in `epoch` by identity group `group`. */
export function flowTag(layout: FlowMarkLayout, epoch: number, group: number): number {
  return ((((epoch & 0xff) << 8) | (group & 0xff)) << layout.shift) >>> 0;
}

/** The bits of the layout that hold the epoch. */
export function epochBits(layout: FlowMarkLayout): number {
  return (0xff00 << layout.shift) >>> 0;
}

/** The epoch after `epoch`: 1 to 255, then 1 again (0 is never an epoch). */
export function nextEpoch(epoch: number | undefined): number {
  return epoch === undefined || epoch < 1 || epoch >= MAX_EPOCH ? 1 : epoch + 1;
}

/** The epoch and mark layout a compiled ruleset carries in its table comment, or null (written by an older Sluice). */
export function rulesetFlowMark(rs: Pick<Ruleset, 'comment'>): { epoch: number; layout: FlowMarkLayout } | null {
  const fields = parseTableComment(rs.comment)?.fields;
  const e = /^[0-9]{1,3}$/.exec(fields?.epoch ?? '');
  const m = /^0x([0-9a-f]{8})$/.exec(fields?.ctmark ?? '');
  if (!e || !m) return null;
  const epoch = Number(e[0]);
  const layout = flowMarkLayout(parseInt(m[1] ?? '0', 16));
  if (epoch < 1 || epoch > MAX_EPOCH || layout.mask >>> layout.shift !== 0xffff) return null;
  return { epoch, layout };
}

/** The table comment fields that record the epoch and layout. */
export function flowMarkFields(layout: FlowMarkLayout, epoch: number): Record<string, string> {
  return { ctmark: `0x${layout.mask.toString(16).padStart(8, '0')}`, epoch: String(epoch) };
}

/**
 * The same ruleset in another epoch: every tag written or compared moves to
 * `epoch`, nothing else changes. Lets the apply path compare a compiled
 * ruleset with the live one in the live epoch, and take a new epoch only
 * when the meaning changed. Pure; returns the input when it has no flow marks.
 */
export function withEpoch(rs: Ruleset, epoch: number): Ruleset {
  const fm = rulesetFlowMark(rs);
  if (!fm || fm.epoch === epoch) return rs;
  const bits = epochBits(fm.layout);
  const moved = (v: number) => ((v & ~bits) | (flowTag(fm.layout, epoch, 0) & bits)) >>> 0;
  const stmt = (s: Stmt): Stmt => {
    if (s.k === 'ct-mark-set' && s.mask === fm.layout.mask) return { ...s, value: moved(s.value) };
    if (s.k === 'cmp' && s.sel === 'ct mark' && s.mask === fm.layout.mask) return { ...s, value: moved(s.value) };
    return s;
  };
  const comment = parseTableComment(rs.comment);
  return {
    ...rs,
    comment: comment ? buildTableComment({ ...comment, fields: { ...comment.fields, epoch: String(epoch) } }) : rs.comment,
    chains: rs.chains.map((c) => ({ ...c, rules: c.rules.map((r) => ({ ...r, stmts: r.stmts.map(stmt) })) })),
  };
}
