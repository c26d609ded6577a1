/**
 * How deep a YAML text nests, found before it is parsed into nodes.
 *
 * yaml composes nodes recursively, one call chain per level, so a text
 * nested a few thousand deep overflows the stack. Caught, that is a
 * RangeError; but in a process that has parsed such a text before, the
 * overflow can land in V8 compiling one of yaml's regular expressions, and
 * V8 then aborts the whole process ("RegExpCompiler Allocation failed"),
 * which no catch sees: seen with flow lists (`[[[[...`) and compact
 * sequences (`- - - - ...`) 1,950 then 5,000 deep, on Node 20. A daemon
 * that reloads a policy, or a dashboard worker that reads one, must refuse
 * such a text, not die of it. yaml's lexer and CST parser keep their own
 * stacks (no recursion), so the depth is measured on the CST, with a stack
 * here too, and a text deeper than any policy needs never reaches the
 * composer.
 */
import { PolicyError } from '../errors.js';
import { parseDocument, Parser, type Document } from '../vendor/yaml.js';

/** Collections inside collections a policy may have: a policy needs about 6; the composer overflows at about 1,000. */
export const MAX_YAML_DEPTH = 64;

/** Where the nesting first passes the limit, as an offset into the text, or null when it never does. */
export function yamlTooDeep(text: string, limit = MAX_YAML_DEPTH): number | null {
  for (const top of new Parser().parse(text)) {
    const stack: { token: unknown; depth: number }[] = [{ token: top, depth: 0 }];
    while (stack.length > 0) {
      const { token, depth } = stack.pop() as { token: unknown; depth: number };
      if (!token || typeof token !== 'object') continue;
      const t = token as { type?: string; offset?: number; value?: unknown; items?: { key?: unknown; value?: unknown }[] };
      if (depth > limit) return t.offset ?? 0;
      if (t.type === 'document') stack.push({ token: t.value, depth });
      else if ((t.type === 'block-map' || t.type === 'block-seq' || t.type === 'flow-collection') && Array.isArray(t.items)) {
        for (const item of t.items) {
          stack.push({ token: item.key, depth: depth + 1 }, { token: item.value, depth: depth + 1 });
        }
      }
    }
  }
  return null;
}

/** The message for a text nested deeper than MAX_YAML_DEPTH. */
export const TOO_DEEP = `policy nests too deeply to parse (more than ${MAX_YAML_DEPTH} lists or maps inside each other)`;

/**
 * yaml's parseDocument for texts that may nest deeper than a policy does (a
 * policy file as it is on disk now, edited since it was applied): refused
 * with a PolicyError at the place, before yaml composes it.
 */
export function parseDocumentChecked(text: string, file = '(policy)'): Document.Parsed {
  const deep = yamlTooDeep(text);
  if (deep !== null) {
    const before = text.slice(0, deep);
    const line = before.split('\n').length;
    const column = deep - (before.lastIndexOf('\n') + 1) + 1;
    throw new PolicyError([{ file, line, column, path: [], message: TOO_DEEP, severity: 'error' }]);
  }
  return parseDocument(text);
}
