/**
 * Parsers for /proc files. Hostile input: a process controls its own comm
 * and command line (spaces, parentheses, newlines, invalid UTF-8), and a file
 * can change or vanish between reads. Every parser returns null (or a safe
 * value) for anything unexpected and never throws.
 */

/** The uids of /proc/PID/status: real, effective, saved, filesystem. */
export interface StatusIds {
  uid: number;
  euid: number;
  fsuid: number;
  gid: number;
}

const MAX_CMDLINE = 4096;

/** Reads the Uid: and Gid: lines of /proc/PID/status. */
export function parseStatus(text: string): StatusIds | null {
  const uid = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$/m.exec(text);
  const gid = /^Gid:\s+(\d+)/m.exec(text);
  if (!uid || !gid) return null;
  const n = (s: string | undefined) => {
    const v = Number(s);
    return Number.isSafeInteger(v) && v >= 0 && v <= 0xffffffff ? v : null;
  };
  const [u, e, f, g] = [n(uid[1]), n(uid[2]), n(uid[4]), n(gid[1])];
  if (u === null || e === null || f === null || g === null) return null;
  return { uid: u, euid: e, fsuid: f, gid: g };
}

/** What /proc/PID/stat tells: the command name, parent, and start time in clock ticks after boot. */
export interface StatInfo {
  comm: string;
  ppid: number;
  startTicks: number;
}

/**
 * Parses /proc/PID/stat. The comm is between the first '(' and the LAST ')'
 * because it may itself contain ')' and spaces.
 */
export function parseStat(text: string): StatInfo | null {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  const comm = text.slice(open + 1, close);
  const rest = text.slice(close + 2).split(' ');
  // Fields after comm: state(3) ppid(4) ... starttime(22); rest[0] is field 3.
  const ppid = Number(rest[1]);
  const start = Number(rest[19]);
  if (!Number.isSafeInteger(ppid) || ppid < 0 || !Number.isSafeInteger(start) || start < 0) return null;
  return { comm: cleanText(comm, 64), ppid, startTicks: start };
}

/** The cgroup v2 path from /proc/PID/cgroup (the `0::` line), or null on a v1-only host. */
export function parseCgroupFile(text: string): string | null {
  for (const line of text.split('\n')) {
    if (line.startsWith('0::')) {
      const path = line.slice(3);
      return path.startsWith('/') && path.length <= 4096 ? cleanText(path, 4096) : null;
    }
  }
  return null;
}

/** A command line from /proc/PID/cmdline: arguments joined by spaces, bounded, control characters escaped. */
export function parseCmdline(buf: Uint8Array): string {
  let end = buf.length;
  while (end > 0 && buf[end - 1] === 0) end--;
  const parts = Buffer.from(buf.subarray(0, Math.min(end, MAX_CMDLINE * 4)))
    .toString('utf8')
    .split('\0');
  return cleanText(parts.join(' '), MAX_CMDLINE);
}

/** The inode of a `socket:[12345]` fd link, or null for anything else. */
export function parseSocketLink(link: string): number | null {
  const m = /^socket:\[(\d{1,20})\]$/.exec(link);
  if (!m) return null;
  const v = Number(m[1]);
  return Number.isSafeInteger(v) ? v : null;
}

/** The network namespace id from a `net:[4026531840]` link. */
export function parseNsLink(link: string): number | null {
  const m = /^net:\[(\d{1,20})\]$/.exec(link);
  if (!m) return null;
  const v = Number(m[1]);
  return Number.isSafeInteger(v) ? v : null;
}

/** Replaces control characters (terminal escapes, newlines) with '?' and bounds the length. */
export function cleanText(s: string, max: number): string {
  // eslint-disable-next-line no-control-regex
  const clean = s.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  return clean.length > max ? clean.slice(0, max) : clean;
}
