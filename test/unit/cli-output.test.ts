/**
 * src/cli/output.ts: a reader that goes away ends the output, not the
 * command. Each case runs a small program in a child process whose stdout or
 * stderr is a pipe closed before it writes, and reports back on fd 3.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';

const OUTPUT = new URL('../../src/cli/output.js', import.meta.url).href;

/** Runs `body` (an ES module body with guardOutput/onStop imported) with stdout and stderr closed by the reader; returns its exit code and fd 3. */
function run(body: string, guard = true): Promise<{ code: number | null; report: string }> {
  const src = `import { guardOutput, onStop } from ${JSON.stringify(OUTPUT)};
import { createWriteStream } from 'node:fs';
const report = createWriteStream(null, { fd: 3 });
const say = (s) => new Promise((r) => report.write(s + '\\n', r));
${guard ? 'guardOutput();' : ''}
${body}`;
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ['--input-type=module', '-e', src], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    // The readers go away at once: every write meets a closed pipe.
    c.stdout?.destroy();
    c.stderr?.destroy();
    let report = '';
    c.stdio[3]?.on('data', (d: Buffer) => (report += d.toString()));
    const timer = setTimeout(() => {
      c.kill('SIGKILL');
      reject(new Error(`timed out; said: ${report}`));
    }, 10_000);
    c.on('exit', (code) => {
      clearTimeout(timer);
      // The report pipe drains after exit.
      setTimeout(() => resolve({ code, report }), 50);
    });
  });
}

const writeForAWhile = `for (let i = 0; i < 10; i++) {
  await new Promise((r) => setTimeout(r, 20));
  process.stdout.write('out ' + i + '\\n');
  process.stderr.write('err ' + i + '\\n');
}
await say('finished');`;

describe('cli output: a reader that goes away', () => {
  it('without the guard, a write to a closed pipe kills the process (what the guard is for)', async () => {
    const r = await run(writeForAWhile, false);
    assert.notEqual(r.code, 0);
    assert.doesNotMatch(r.report, /finished/);
  });

  it('with it, writes to closed stdout and stderr are dropped and the program finishes', async () => {
    const r = await run(writeForAWhile);
    assert.equal(r.code, 0);
    assert.match(r.report, /finished/);
  });

  it('a write callback still runs after the stream became a sink', async () => {
    const r = await run(`await new Promise((r) => setTimeout(r, 50));
process.stderr.write('a\\n');
await new Promise((r) => setTimeout(r, 50));
await new Promise((r) => process.stderr.write('b\\n', r));
await new Promise((r) => process.stderr.write('c\\n', 'utf8', r));
await say('callbacks ran');`);
    assert.equal(r.code, 0);
    assert.match(r.report, /callbacks ran/);
  });

  it('a follower stops when stdout closes, as on an interrupt (onStop)', async () => {
    const r = await run(`const stopped = new Promise((r) => onStop(r));
let n = 0;
const t = setInterval(() => process.stdout.write('line ' + n++ + '\\n'), 20);
await stopped;
clearInterval(t);
await say('stopped after ' + n);`);
    assert.equal(r.code, 0);
    assert.match(r.report, /stopped after \d+/);
  });

  it('onStop fires once, on SIGTERM too, and its remover detaches it', async () => {
    const r = await run(`let calls = 0;
// Keeps the process alive through the second signal (ours is gone after the first).
process.on('SIGINT', () => undefined);
onStop(() => calls++);
process.kill(process.pid, 'SIGTERM');
await new Promise((r) => setTimeout(r, 100));
process.kill(process.pid, 'SIGINT');
await new Promise((r) => setTimeout(r, 100));
const off2 = onStop(() => calls += 100);
off2();
process.kill(process.pid, 'SIGINT');
await new Promise((r) => setTimeout(r, 100));
await say('calls ' + calls);`);
    assert.equal(r.code, 0);
    assert.match(r.report, /calls 1$/m);
  });
});
