import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';

/** Editors save in bursts (write, rename, chmod): one look after the last event. */
const SETTLE_MS = 300;
/** The backstop when the directory cannot be watched (or an event is missed): a look this often. */
const POLL_MS = 30_000;

/**
 * Tells when a policy file may have changed: inotify on its directory (an
 * editor that saves by writing a new file and renaming it over the old one
 * replaces the inode, which a watch on the file itself would lose), events
 * for other names ignored, a burst settled into one call, and a slow poll as
 * the backstop. It says "look", never what changed: the caller reads the
 * file and compares its hash with what is applied.
 */
export class PolicyFileWatch {
  private watchers: FSWatcher[] = [];
  private key: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private poll: NodeJS.Timeout | undefined;

  constructor(
    private onChange: () => void,
    private settleMs = SETTLE_MS,
    private pollMs = POLL_MS,
  ) {}

  /**
   * Watches `path` and the files in `also` (the list files a policy reads),
   * re-arming when they differ from the ones watched, or nothing when `path`
   * is null. One watch per directory, for the names in it.
   */
  arm(path: string | null, also: string[] = []): void {
    const key = path === null ? undefined : JSON.stringify([path, ...also]);
    if (key === this.key) return;
    this.disarm();
    if (path === null) return;
    this.key = key;
    const byDir = new Map<string, Set<string>>();
    for (const p of [path, ...also]) {
      const names = byDir.get(dirname(p)) ?? new Set<string>();
      names.add(basename(p));
      byDir.set(dirname(p), names);
    }
    for (const [dir, names] of byDir) {
      try {
        const w = watch(dir, (_event, file) => {
          // Some platforms give no name: look anyway.
          if (file === null || names.has(file)) this.schedule();
        });
        w.on('error', () => {
          w.close();
          this.watchers = this.watchers.filter((x) => x !== w);
        });
        this.watchers.push(w);
      } catch {
        // The directory is gone or unreadable: the poll covers it.
      }
    }
    this.poll = setInterval(() => this.onChange(), this.pollMs);
    this.poll.unref();
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.onChange();
    }, this.settleMs);
  }

  disarm(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    if (this.timer) clearTimeout(this.timer);
    if (this.poll) clearInterval(this.poll);
    this.timer = undefined;
    this.poll = undefined;
    this.key = undefined;
  }
}
