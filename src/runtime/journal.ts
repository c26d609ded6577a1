import { fstatSync } from 'node:fs';
import { native } from '../native/native.js';

/** systemd-journald's socket for its native protocol (SLUICE_JOURNAL_SOCKET names another: a container's bind mount, a test's receiver). */
export const JOURNAL_SOCKET = process.env.SLUICE_JOURNAL_SOCKET || '/run/systemd/journal/socket';

/** Datagram budget: the native send takes under 4 KiB (no memfd for larger entries). */
const MAX_BYTES = 4_000;

/** `rule` -> `SLUICE_RULE`, `firstSeen` -> `SLUICE_FIRST_SEEN`: journal field names are A-Z, 0-9 and _, not starting with _. */
export function journalKey(name: string): string {
  const k = name
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toUpperCase()
    .replace(/[^A-Z0-9_]/g, '_');
  return `SLUICE_${k}`.slice(0, 64);
}

/**
 * One journal entry in the native protocol's simple form (`KEY=value`
 * lines): values are made one line, with control characters as `?` (names
 * in them come from other processes, and the binary form is not needed
 * then). MESSAGE is cut so that the whole entry fits one datagram.
 */
export function journalEntry(message: string, fields: readonly (readonly [string, unknown])[]): string {
  const line = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v) ?? '').replace(/[\r\n]+/g, ' ').replace(/[\x00-\x1f\x7f]/g, '?');
  const rest = fields
    .filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => `${k}=${line(v)}`)
    .join('\n');
  let msg = line(message);
  const room = MAX_BYTES - Buffer.byteLength(rest) - 10;
  if (room <= 0) return `MESSAGE=${msg.slice(0, 1000)}\n`;
  while (Buffer.byteLength(msg) > room) msg = msg.slice(0, -Math.max(1, Math.ceil((Buffer.byteLength(msg) - room) / 4)));
  return `MESSAGE=${msg}\n${rest}\n`;
}

/** Sends one entry; throws with the reason (never blocks: a full queue is EAGAIN). */
export function journalSend(entry: string, socket = JOURNAL_SOCKET): void {
  native().unixDgramSend(socket, entry);
}

/**
 * Whether this process's standard error is the journal: systemd sets
 * JOURNAL_STREAM to its device and inode (systemd.exec(5)); a redirected
 * stderr (a file, a pipe) keeps JSON lines.
 */
export function stderrIsJournal(env: NodeJS.ProcessEnv = process.env): boolean {
  const m = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? '');
  if (!m) return false;
  try {
    const st = fstatSync(2, { bigint: true });
    return st.dev === BigInt(m[1] as string) && st.ino === BigInt(m[2] as string);
  } catch {
    return false;
  }
}

/** syslog priorities of the daemon's log levels. */
export const LEVEL_PRIORITY: Record<string, number> = { error: 3, warn: 4, info: 6, debug: 7 };
