import { firstInvalidUtf8 } from './utf8.js';
import { closeSync, constants, fstatSync, openSync, readSync, realpathSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseDestination, showValue, type Destination } from './parse-values.js';

/**
 * List files (`to_file:`): one destination a line, for feeds of hundreds of
 * thousands of entries that should not go through YAML. The format takes
 * FireHOL .netset/.ipset and Spamhaus DROP/EDROP files as they are:
 *
 *   # a comment               whole-line comments with # or ;
 *   198.18.0.0/15 ; SBL123    a trailing comment (Spamhaus writes `; SBLnnn`)
 *   2001:db8::/32             blank lines and CRLF line ends are fine
 *   api.example.com           names and *.wildcards, as in `to:`
 *
 * Each entry goes through parseDestination, the parser of `to:`, so an entry
 * means exactly what it means there; the one exception is the keyword `any`,
 * refused in a list (a feed is data: one word in it must not open a rule to
 * everything).
 */

/** A list file larger than this is refused before it is read (a million IPv4 hosts with comments is ~20 MiB). */
export const MAX_LIST_BYTES = 64 * 1024 * 1024;
/** A line longer than this is an error (the longest entry, an IPv6 range, is under 100 characters). */
export const MAX_LIST_LINE = 4096;
/** At most this many errors are reported per list file; the rest are counted. */
export const MAX_LIST_ERRORS = 50;

/** One problem in a list file, 1-based. */
export interface ListIssue {
  line: number;
  column: number;
  message: string;
}

/** A list file's entries, parsed, and its problems. */
export interface ParsedList {
  destinations: Destination[];
  issues: ListIssue[];
  /** Errors beyond MAX_LIST_ERRORS, counted and not listed. */
  more: number;
}

/**
 * Parses the text of a list file. Pure; every problem is reported with its
 * line and column (up to MAX_LIST_ERRORS of them, the rest counted).
 */
export function parseListBytes(bytes: Uint8Array): ParsedList {
  const destinations: Destination[] = [];
  const issues: ListIssue[] = [];
  let more = 0;
  const report = (line: number, column: number, message: string) => {
    if (issues.length < MAX_LIST_ERRORS) issues.push({ line, column, message });
    else more++;
  };
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    // Lines of valid UTF-8 still count; say where the first bad byte is.
    const at = firstInvalidUtf8(bytes);
    let line = 1;
    let start = 0;
    for (let i = 0; i < at; i++) {
      if (bytes[i] === 0x0a) {
        line++;
        start = i + 1;
      }
    }
    report(line, at - start + 1, `not valid UTF-8 text (byte ${at}); is this a binary file?`);
    return { destinations, issues, more };
  }
  const n = text.length;
  let lineNo = 0;
  // A byte-order mark some editors write before the first line.
  let pos = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  while (pos < n) {
    let end = text.indexOf('\n', pos);
    if (end < 0) end = n;
    lineNo++;
    const lineStart = pos;
    pos = end + 1;
    let stop = end;
    if (stop > lineStart && text.charCodeAt(stop - 1) === 13) stop--;
    if (stop - lineStart > MAX_LIST_LINE) {
      report(lineNo, MAX_LIST_LINE + 1, `line is ${stop - lineStart} characters; the limit is ${MAX_LIST_LINE}`);
      continue;
    }
    // The entry: from the first non-blank to before a comment (# or ;), trailing blanks trimmed.
    let a = lineStart;
    while (a < stop && isBlank(text.charCodeAt(a))) a++;
    let b = a;
    let bad = -1;
    // Where the first blank inside the entry is (an entry is one word; blanks before a comment are trimmed).
    let blank = -1;
    while (b < stop) {
      const c = text.charCodeAt(b);
      if (c === 35 || c === 59) break;
      if (c === 32 || c === 9) {
        if (blank === -1) blank = b;
      } else if (c < 32 || c === 127) {
        bad = b;
        break;
      } else if (blank >= 0) blank = -2;
      b++;
    }
    if (bad < 0) {
      // A control character in a comment is as suspicious as one in an entry: is this a binary file?
      for (let k = b; k < stop; k++) {
        const c = text.charCodeAt(k);
        if ((c < 32 && c !== 9) || c === 127) {
          bad = k;
          break;
        }
      }
    }
    if (bad >= 0) {
      report(lineNo, bad - lineStart + 1, `control character 0x${text.charCodeAt(bad).toString(16).padStart(2, '0')}; is this a binary file?`);
      continue;
    }
    let e = b;
    while (e > a && isBlank(text.charCodeAt(e - 1))) e--;
    if (e === a) continue;
    const entry = text.slice(a, e);
    const column = a - lineStart + 1;
    if (blank === -2) {
      report(lineNo, column, `one entry a line (comments start with # or ;): ${showValue(entry)}`);
      continue;
    }
    if (entry === 'any') {
      report(lineNo, column, 'any is not allowed in a list file (write to: [any] in the policy if that is what the rule means)');
      continue;
    }
    const d = parseDestination(entry);
    if (!d.ok) {
      report(lineNo, column, `${d.reason}: ${showValue(entry)}`);
      continue;
    }
    destinations.push(d.value);
  }
  return { destinations, issues, more };
}

function isBlank(c: number): boolean {
  return c === 32 || c === 9;
}

/** Reading a list file: its bytes, or why not. */
export type ListRead = { ok: true; bytes: Buffer } | { ok: false; reason: string };

/**
 * Reads a list file from disk, as an attacker's file would be read. The file
 * is opened without blocking (a FIFO cannot hang a load) and everything is
 * checked on the open descriptor, so a file swapped after a check is not
 * what gets read: it must be a regular file (not a FIFO, a device such as
 * /dev/zero, or a directory), at most MAX_LIST_BYTES, and it and its
 * directory (after symlinks) must belong to root or this process's user and
 * be writable by nobody else: whoever can write a feed decides what the rule
 * blocks or allows. The read is bounded by the size seen, plus one byte to
 * notice a file still growing.
 */
export function readListFile(path: string): ListRead {
  const uid = process.getuid?.() ?? 0;
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    return { ok: false, reason: errnoOf(err) };
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return { ok: false, reason: 'not a regular file' };
    if (st.size > MAX_LIST_BYTES) return { ok: false, reason: `it is ${st.size} bytes; the limit is ${MAX_LIST_BYTES}` };
    const owner = ownerProblem('it', st.uid, st.mode, uid);
    if (owner) return { ok: false, reason: owner };
    let dir: string;
    try {
      dir = dirname(realpathSync(path));
    } catch (err) {
      return { ok: false, reason: `cannot resolve it: ${errnoOf(err)}` };
    }
    let dst;
    try {
      dst = statSync(dir);
    } catch (err) {
      return { ok: false, reason: `cannot stat its directory: ${errnoOf(err)}` };
    }
    // A sticky directory (/tmp) keeps others from replacing a file they do not own.
    const sticky = (dst.mode & 0o1000) !== 0;
    const dirOwner = sticky ? (dst.uid !== 0 && dst.uid !== uid ? `its directory ${dir} belongs to uid ${dst.uid}` : null) : ownerProblem(`its directory ${dir}`, dst.uid, dst.mode, uid);
    if (dirOwner) return { ok: false, reason: dirOwner };
    const buf = Buffer.allocUnsafe(st.size + 1);
    let got = 0;
    while (got < buf.length) {
      const r = readSync(fd, buf, got, buf.length - got, null);
      if (r === 0) break;
      got += r;
    }
    if (got > st.size) return { ok: false, reason: 'it grew while being read (a write in progress?)' };
    return { ok: true, bytes: buf.subarray(0, got) };
  } catch (err) {
    return { ok: false, reason: errnoOf(err) };
  } finally {
    closeSync(fd);
  }
}

function ownerProblem(what: string, owner: number, mode: number, uid: number): string | null {
  if (owner !== 0 && owner !== uid) return `${what} belongs to uid ${owner}, not root: whoever can write a list file sets the firewall`;
  if ((mode & 0o022) !== 0) return `${what} is writable by group or others (mode ${(mode & 0o777).toString(8)}): whoever can write a list file sets the firewall`;
  return null;
}

function errnoOf(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
}
