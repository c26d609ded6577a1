/**
 * A webhook's body template (`template:` of a webhook sink): JSON in which
 * each `{{name}}` stands where a JSON value goes and becomes that field of
 * the alert as a JSON value (a string quoted and escaped, a number, null
 * when absent). A value is never pasted into a string: whatever names
 * another process chose cannot break out of their place in the body.
 */

/** The fields a template may use. `text` is the summary made safe for chat (see alerts/sinks chatText). */
export const TEMPLATE_FIELDS = ['text', 'message', 'trigger', 'severity', 'route', 'count', 'first', 'last', 'rule', 'who', 'destination', 'alert'] as const;
export type TemplateField = (typeof TEMPLATE_FIELDS)[number];

const PLACEHOLDER = /\{\{\s*([A-Za-z_]+)\s*\}\}/g;

/** The body: each placeholder replaced by its field's JSON value. */
export function renderTemplate(template: string, values: Partial<Record<TemplateField, unknown>>): string {
  return template.replace(PLACEHOLDER, (_m, name: string) => JSON.stringify(values[name as TemplateField] ?? null));
}

/** Why a template cannot be used (an unknown field, or a body that is not JSON once filled), or null. */
export function templateProblem(template: string): string | null {
  const unknown = [...template.matchAll(PLACEHOLDER)].map((m) => m[1] as string).filter((n) => !(TEMPLATE_FIELDS as readonly string[]).includes(n));
  if (unknown.length > 0) return `unknown template field ${unknown.map((n) => `{{${n}}}`).join(', ')}; one of ${TEMPLATE_FIELDS.map((n) => `{{${n}}}`).join(', ')}`;
  if (!template.match(PLACEHOLDER)) return 'a template uses at least one field, such as {{text}}';
  const sample: Record<TemplateField, unknown> = { text: 'a "quoted" text', message: 'm', trigger: 'tamper', severity: 'critical', route: 'r', count: 2, first: 'f', last: 'l', rule: null, who: 'w', destination: 'd', alert: { a: 1 } };
  try {
    JSON.parse(renderTemplate(template, sample));
  } catch (err) {
    return `a template is JSON with each {{field}} where a value goes (not inside quotes): ${(err as Error).message}`;
  }
  return null;
}
