/**
 * A stand-in for src/dns/attribution-thread.ts in the AttributionClient tests.
 * The client passes `procRoot` through workerData; here it names the behaviour:
 * `hang` never answers, `echo` answers every client whose port is odd with a
 * process whose pid is that port, `crash` exits at the first message.
 */
import { parentPort, workerData } from 'node:worker_threads';

const mode = (workerData as { procRoot?: string }).procRoot;
parentPort?.on('message', (m: { id: number; clients: { port: number }[] }) => {
  if (mode === 'hang') return;
  if (mode === 'crash') process.exit(3);
  const found = m.clients.map((c) => (c.port % 2 === 1 ? { pid: c.port, exe: '/bin/fake', uid: 0 } : null));
  parentPort?.postMessage({ id: m.id, found, stats: { lookups: m.clients.length, found: found.filter(Boolean).length, overBudget: 0, overWork: 0, errors: 0 } });
});
