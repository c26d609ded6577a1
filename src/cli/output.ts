/**
 * A reader that goes away (`sluice log --follow | head`, a closed terminal,
 * a log collector that died) makes writes to our stdout or stderr fail with
 * EPIPE. Node reports that as an 'error' event, and with no listener the
 * process dies on the spot: a `sluice run` then leaves its namespace, veth
 * and table behind, a daemon stops watching. None of that is the command
 * failing. So, for both streams: the first EPIPE turns the stream into a
 * sink (later writes are dropped, never thrown), and a closed stdout tells
 * the commands that only print (the followers) to stop, as an interrupt
 * would. Anything else a write fails with is still an error.
 */

const closed = new AbortController();

/** Aborted when stdout's reader is gone: the followers stop on it. */
export const stdoutClosed: AbortSignal = closed.signal;

let installed = false;

/** Installs the handlers (main does, once, before any command runs). */
export function guardOutput(streams: { stdout: NodeJS.WriteStream; stderr: NodeJS.WriteStream } = process): void {
  if (installed) return;
  installed = true;
  for (const s of [streams.stdout, streams.stderr]) {
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      // A sink from now on: the bytes have nowhere to go, and a second write must not raise again.
      s.write = ((_chunk: unknown, encoding?: unknown, cb?: unknown) => {
        const done = typeof encoding === 'function' ? encoding : cb;
        if (typeof done === 'function') queueMicrotask(() => (done as () => void)());
        return true;
      }) as typeof s.write;
      if (s === streams.stdout && !closed.signal.aborted) closed.abort();
    });
  }
}

/**
 * Calls `stop` once, at the first of SIGINT, SIGTERM or stdout's reader
 * going away; returns what removes those listeners.
 */
export function onStop(stop: () => void): () => void {
  let done = false;
  const once = () => {
    if (done) return;
    done = true;
    off();
    stop();
  };
  const off = () => {
    process.off('SIGINT', once);
    process.off('SIGTERM', once);
    stdoutClosed.removeEventListener('abort', once);
  };
  process.on('SIGINT', once);
  process.on('SIGTERM', once);
  if (stdoutClosed.aborted) queueMicrotask(once);
  else stdoutClosed.addEventListener('abort', once);
  return off;
}
