import { z } from '../vendor/zod.js';
import type { StepId } from '../learn/allow-ladder.js';
import type { Parsed } from './dashboard-query.js';

/**
 * The bodies of the dashboard's state-changing requests (apply a step of
 * "allow this", confirm, roll back to a version), each treated as hostile:
 * JSON objects only, a closed set of fields (an unknown one is a 400),
 * exact types (a number is not a string that looks like one), hashes as 64
 * lowercase hex digits, bounded numbers, and a body of at most
 * MAX_BODY_BYTES, read no further than that.
 */

/** A request body larger than this is refused (413) without reading the rest. */
export const MAX_BODY_BYTES = 4_096;

/** The confirmation window the page offers by default, and the range a request may ask. */
export const DEFAULT_CONFIRM_S = 120;
export const MAX_DASHBOARD_CONFIRM_S = 3_600;

export const STEP_IDS: readonly StepId[] = ['sender-name', 'name', 'zone', 'sender-address', 'address'];

const sha = z.string().regex(/^[0-9a-f]{64}$/, 'want a sha256 (64 lowercase hex digits)');
const confirm = z.number().int('want whole seconds').min(1).max(MAX_DASHBOARD_CONFIRM_S);

const applySchema = z.strictObject({
  event: z.number().int('want a whole number').min(1).max(999_999_999),
  step: z.enum(STEP_IDS as [StepId, ...StepId[]]),
  applied: sha,
  confirm: confirm.optional(),
});

const rollbackSchema = z.strictObject({
  to: sha,
  applied: sha,
  confirm: confirm.optional(),
});

const confirmSchema = z.strictObject({});

/** The fields each body takes, as its parser reads them (the OpenAPI document lists these; a test keeps the two equal). */
export const BODY_FIELDS = {
  '/api/allow/apply': () => Object.keys(applySchema.shape),
  '/api/policy/rollback': () => Object.keys(rollbackSchema.shape),
  '/api/confirm': () => Object.keys(confirmSchema.shape),
};

export interface ApplyRequest {
  event: number;
  step: StepId;
  /** The applied policy's hash the ladder was computed against. */
  applied: string;
  confirm: number;
}

export interface RollbackRequest {
  /** The version (its sha256) to go back to. */
  to: string;
  applied: string;
  confirm: number;
}

function parseJson<T>(schema: z.ZodType<T>, text: string): Parsed<T> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return { ok: false, error: 'the body is not JSON' };
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return { ok: false, error: 'the body must be a JSON object' };
  const r = schema.safeParse(v);
  if (r.success) return { ok: true, value: r.data };
  const i = r.error.issues[0];
  if (i?.code === 'unrecognized_keys') return { ok: false, error: `unknown field: ${JSON.stringify(((i as { keys?: string[] }).keys ?? [])[0]?.slice(0, 32) ?? '')}` };
  const where = i?.path.length ? String(i.path[0]).slice(0, 32) : '';
  return { ok: false, error: `${where ? `${where}: ` : ''}${i?.message ?? 'invalid'}` };
}

/** `POST /api/allow/apply`: `{event, step, applied, confirm?}`. */
export function parseApplyBody(text: string): Parsed<ApplyRequest> {
  const r = parseJson(applySchema, text);
  return r.ok ? { ok: true, value: { ...r.value, confirm: r.value.confirm ?? DEFAULT_CONFIRM_S } } : r;
}

/** `POST /api/policy/rollback`: `{to, applied, confirm?}`. */
export function parseRollbackBody(text: string): Parsed<RollbackRequest> {
  const r = parseJson(rollbackSchema, text);
  return r.ok ? { ok: true, value: { ...r.value, confirm: r.value.confirm ?? DEFAULT_CONFIRM_S } } : r;
}

/** `POST /api/confirm`: an empty body or `{}`. */
export function parseConfirmBody(text: string): Parsed<Record<string, never>> {
  if (text.trim() === '') return { ok: true, value: {} };
  const r = parseJson(confirmSchema, text);
  return r.ok ? { ok: true, value: {} } : r;
}

/**
 * Reads a request body of at most `max` bytes: a Content-Length above it,
 * or a stream that goes past it, is `too-large` (the rest is not read); a
 * body that is not UTF-8 is `bad`. A missing body is ''.
 */
export async function readBody(req: Request, max = MAX_BODY_BYTES): Promise<{ ok: true; text: string } | { ok: false; why: 'too-large' | 'bad' }> {
  const declared = req.headers.get('content-length');
  if (declared !== null && (!/^[0-9]{1,12}$/.test(declared) || Number(declared) > max)) return { ok: false, why: 'too-large' };
  if (!req.body) return { ok: true, text: '' };
  const reader = req.body.getReader();
  const parts: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => undefined);
      return { ok: false, why: 'too-large' };
    }
    parts.push(value);
  }
  try {
    return { ok: true, text: new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(parts)) };
  } catch {
    return { ok: false, why: 'bad' };
  }
}
