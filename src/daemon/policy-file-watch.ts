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
  private watcher: FSWatcher | undefined;
  private path: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private poll: NodeJS.Timeout | undefined;

  constructor(
    private onChange: () => void,
    private settleMs = SETTLE_MS,
    private pollMs = POLL_MS,
  ) {}

  /** Watches `path` (re-arming when it differs from the one watched), or nothing when null. */
  arm(path: string | null): void {
    if (path === this.path) return;
    this.disarm();
    if (path === null) return;
    this.path = path;
    const name = basename(path);
    try {
      this.watcher = watch(dirname(path), (_event, file) => {
        // Some platforms give no name: look anyway.
        if (file === null || file === name) this.schedule();
      });
      this.watcher.on('error', () => this.disarmWatcher());
    } catch {
      // The directory is gone or unreadable: the poll covers it.
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

  private disarmWatcher(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }

  disarm(): void {
    this.disarmWatcher();
    if (this.timer) clearTimeout(this.timer);
    if (this.poll) clearInterval(this.poll);
    this.timer = undefined;
    this.poll = undefined;
    this.path = undefined;
  }
}
