import type { Worker } from 'node:worker_threads';

/** Asks a daemon worker thread to stop (`{t: 'stop'}`) and waits for it; a thread that does not leave in 2 s is ended. */
export async function stopWorkerThread(w: Worker): Promise<void> {
  const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
  w.postMessage({ t: 'stop' });
  const timer = setTimeout(() => void w.terminate(), 2_000);
  await exited;
  clearTimeout(timer);
}
