/**
 * Registers the monitoring components with the daemon: the event store
 * first (it must subscribe before the collector publishes, and stop after
 * it, so what the collector drains on stop is still written), then the
 * collector. Imported once from src/daemon/components.ts.
 */
import { registerComponents } from '../cli/commands/daemon.js';
import { EventStoreComponent, openDefaultStore, retentionFromEnv } from '../events/store-component.js';
import { Collector } from './collector.js';

registerComponents((ctx) => {
  const collector = new Collector();
  const store = new EventStoreComponent({ open: () => openDefaultStore(ctx.state.dir), counters: () => collector.counters(), retention: retentionFromEnv() });
  return [store, collector];
});
