import { z } from '../vendor/zod.js';

/**
 * The shape of a policy file, before values are parsed. Strict objects: an
 * unknown key is an error (a misspelt `port:` must never silently widen a
 * rule). Scalars stay loose here (`unknown`) where parse-values.ts gives a
 * more precise message than a type error would.
 */

const scalarList = z.array(z.union([z.string(), z.number()])).max(1_000_000);

export const ruleSchema = z.strictObject({
  name: z.string(),
  action: z.enum(['allow', 'deny']).optional(),
  to: scalarList.optional(),
  // List files: one destination a line (src/policy/list-file.ts); relative to the policy's directory.
  to_file: z.union([z.string().min(1).max(4096), z.array(z.string().min(1).max(4096)).min(1).max(64)]).optional(),
  ports: scalarList.optional(),
  users: scalarList.optional(),
  services: z.array(z.string()).max(10_000).optional(),
  interfaces: z.array(z.string()).max(10_000).optional(),
  log: z.boolean().optional(),
  mode: z.enum(['audit', 'enforce']).optional(),
  comment: z.string().max(200).optional(),
});

export const scopeSchema = z.strictObject({
  name: z.string(),
  mode: z.enum(['audit', 'enforce']),
  users: scalarList.optional(),
  services: z.array(z.string()).max(10_000).optional(),
  comment: z.string().max(200).optional(),
});

const dnsShape = z.strictObject({
  guard: z.boolean().optional(),
  upstreams: z.array(z.string()).min(1).max(16).optional(),
  port: z.number().int().min(1).max(65535).optional(),
  ttl_floor: z.number().int().min(0).max(86_400).optional(),
  ttl_grace: z.number().int().min(0).max(86_400).optional(),
  ttl_max: z.number().int().min(1).max(7 * 86_400).optional(),
  blocked_answer: z.enum(['nxdomain', 'refused']).optional(),
  encrypted_dns: z.enum(['block', 'allow']).optional(),
  encrypted_dns_list: z.string().max(4096).optional(),
  mark: z.number().int().min(1).max(0xffffffff).optional(),
  max_addresses_per_answer: z.number().int().min(1).max(4096).optional(),
  max_addresses_per_name: z.number().int().min(1).max(65_536).optional(),
  cache_size: z.number().int().min(0).max(1_000_000).optional(),
  cache_max_negative_ttl: z.number().int().min(0).max(86_400).optional(),
});

const sinkShape = z.strictObject({
  webhook: z.string().max(2048).optional(),
  secret_file: z.string().max(4096).optional(),
  template: z.string().max(8192).optional(),
  syslog: z.string().max(512).optional(),
  exec: z.array(z.string().max(4096)).min(1).max(64).optional(),
  timeout: z.union([z.string(), z.number()]).optional(),
  journal: z.literal(true).optional(),
});

export const alertShape = z.strictObject({
  name: z.string(),
  sink: sinkShape,
  on: z.array(z.string()).min(1).max(32),
  rules: z.array(z.string()).min(1).max(10_000).optional(),
  window: z.union([z.string(), z.number()]).optional(),
});

export const suppressShape = z.strictObject({
  rule: z.string().optional(),
  destination: z.string().max(512).optional(),
  until: z.union([z.string(), z.date()]),
  reason: z.string().min(1).max(500),
});

const topShape = {
  version: z.literal(1).optional(),
  mode: z.enum(['audit', 'enforce']).optional(),
  default: z.enum(['deny', 'allow']).optional(),
  block_with: z.enum(['reject', 'drop']).optional(),
  essentials: z.boolean().optional(),
  tamper: z.enum(['restore', 'alert']).optional(),
  owned_table: z.boolean().optional(),
  log: z
    .strictObject({
      group: z.number().int().min(1).max(65535).optional(),
      rate: z.number().int().min(1).max(1_000_000).optional(),
      burst: z.number().int().min(1).max(10_000_000).optional(),
      user_rate: z.number().int().min(1).max(1_000_000).optional(),
      user_burst: z.number().int().min(1).max(10_000_000).optional(),
      allowed: z.boolean().optional(),
    })
    .optional(),
  dns: dnsShape.optional(),
  alerts: z.array(alertShape).max(64).optional(),
  suppress: z.array(suppressShape).max(10_000).optional(),
  flows: z
    .strictObject({
      ct_mark_mask: z.number().int().min(1).max(0xffffffff).optional(),
      replies: z.union([z.literal('any'), scalarList.min(1).max(1_000)]).optional(),
    })
    .optional(),
  dashboard: z
    .strictObject({
      listen: z.string().max(64),
    })
    .optional(),
  // Each scope is checked on its own with scopeSchema, so one bad scope does not hide the others' errors.
  scopes: z.array(z.unknown()).max(1_000).optional(),
};

/** Top-level keys; each rule is checked on its own with ruleSchema. */
export const topSchema = z.strictObject({ ...topShape, rules: z.array(z.unknown()).max(10_000).optional() });

export const policySchema = z.strictObject({ ...topShape, rules: z.array(ruleSchema).max(10_000).optional() });

export type RawPolicy = z.infer<typeof policySchema>;

/**
 * Keeps the keys of `value` that are individually well-typed, so a map with
 * one bad key still gets its other values validated (and reported) in the
 * same run. Errors for the dropped keys were already reported.
 */
function lenient<S extends z.ZodRawShape>(shape: S, value: unknown): Partial<z.infer<z.ZodObject<S>>> {
  const out: Record<string, unknown> = {};
  if (!value || typeof value !== 'object' || Array.isArray(value)) return out as Partial<z.infer<z.ZodObject<S>>>;
  for (const [k, schema] of Object.entries(shape)) {
    const v = (value as Record<string, unknown>)[k];
    if (v === undefined) continue;
    const r = (schema as z.ZodType).safeParse(v);
    if (r.success) out[k] = r.data;
    else {
      // A section of settings (dns:, log:, flows:) with one bad key keeps its good ones, so their own
      // checks still run; only a section whose every key is optional (a partial one is still a valid one).
      const inner = schema instanceof z.ZodOptional ? schema.unwrap() : schema;
      if (inner instanceof z.ZodObject && v !== null && typeof v === 'object' && !Array.isArray(v)) {
        const shape = inner.shape as z.ZodRawShape;
        if (Object.values(shape).every((f) => (f as z.ZodType).safeParse(undefined).success)) out[k] = lenient(shape, v);
      }
    }
  }
  return out as Partial<z.infer<z.ZodObject<S>>>;
}

/**
 * A list's items one by one: each item that is well-typed on its own, null
 * for one that is not (its errors were reported with the list's), at its own
 * index. One bad alert or suppression no longer hides the other items' errors.
 */
export function lenientItems<T>(schema: z.ZodType<T>, value: unknown): (T | null)[] {
  if (!Array.isArray(value)) return [];
  return value.map((item) => {
    const r = schema.safeParse(item);
    return r.success ? r.data : null;
  });
}

/** The well-typed top-level settings of a raw policy. */
export function lenientTop(value: Record<string, unknown>): Omit<RawPolicy, 'rules'> {
  return lenient(topShape, value);
}

/** The well-typed keys of a rule that failed strict validation; null when it has no usable name. */
export function lenientRule(value: unknown): RawRule | null {
  const r = lenient(ruleSchema.shape, value);
  return typeof r.name === 'string' ? (r as RawRule) : null;
}
export type RawRule = z.infer<typeof ruleSchema>;
export type RawScope = z.infer<typeof scopeSchema>;

/** The well-typed keys of a scope that failed strict validation; null when it has no usable name and mode. */
export function lenientScope(value: unknown): RawScope | null {
  const r = lenient(scopeSchema.shape, value);
  return typeof r.name === 'string' && r.mode !== undefined ? (r as RawScope) : null;
}

function unwrapOptional(s: z.ZodType): z.ZodType {
  let t = s;
  while (t instanceof z.ZodOptional) t = t.unwrap() as z.ZodType;
  return t;
}

/**
 * The keys a policy allows in the map at `path` ([], ['dns'], ['rules', 0],
 * ['alerts', 2, 'sink']), read from the schemas themselves, so that a
 * suggestion for a misspelt key can never name a key the schema refuses or
 * miss one it takes. Empty where the path leads to no map.
 */
export function keysAt(path: readonly (string | number)[]): string[] {
  let s: z.ZodType | undefined = topSchema;
  for (let i = 0; i < path.length && s !== undefined; i++) {
    const seg = path[i];
    // topSchema takes rules and scopes as unknown lists: each entry is checked with its own schema.
    if (i === 1 && typeof seg === 'number' && (path[0] === 'rules' || path[0] === 'scopes')) {
      s = path[0] === 'rules' ? ruleSchema : scopeSchema;
      continue;
    }
    const t = unwrapOptional(s);
    if (t instanceof z.ZodObject && typeof seg === 'string') s = Object.hasOwn(t.shape, seg) ? (t.shape[seg] as z.ZodType) : undefined;
    else if (t instanceof z.ZodArray && typeof seg === 'number') s = t.element as z.ZodType;
    else s = undefined;
  }
  const t = s === undefined ? undefined : unwrapOptional(s);
  return t instanceof z.ZodObject ? Object.keys(t.shape) : [];
}
