/**
 * Stands in for systemd's user manager (user@UID.service) as far as a test
 * needs it: as root, moves itself into a cgroup delegated to UID, then runs
 * the command there as UID (setpriv, no supplementary groups). The command
 * starts inside the delegated subtree, as every process a user starts with
 * `systemd-run --user` or from a user unit does, and is free to make and
 * join cgroups below it: that is what delegation allows.
 *
 *   node delegated-user.js CGROUP_DIR UID -- CMD [ARGS...]
 *
 * Exits with the command's status; its output passes through.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [dir, uid, sep, ...cmd] = process.argv.slice(2);
if (!dir || !uid || !/^[0-9]+$/.test(uid) || sep !== '--' || cmd.length === 0) {
  process.stderr.write('usage: delegated-user.js CGROUP_DIR UID -- CMD [ARGS...]\n');
  process.exit(2);
}
// A forked child starts in its parent's cgroup: join first, then start the command.
writeFileSync(join(dir, 'cgroup.procs'), String(process.pid));
const child = spawn('setpriv', ['--reuid', uid, '--regid', uid, '--clear-groups', '--', ...cmd], { stdio: 'inherit' });
child.on('error', (err) => {
  process.stderr.write(`delegated-user: ${err.message}\n`);
  process.exit(1);
});
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
