import { AlertsComponent } from '../alerts/alerts-component.js';
import { GuardComponent } from '../dns/guard-component.js';
import { EventStoreComponent, openDefaultStore, retentionFromEnv } from '../events/store-component.js';
import { Collector } from '../monitor/collector.js';
import type { Component } from './daemon.js';
import { DashboardComponent } from './dashboard-component.js';
import { IntegrityWatch } from './integrity-watch.js';
import { ServiceWatch } from './service-watch.js';
import { TamperWatch } from './tamper-watch.js';

/**
 * The daemon's components, in start order (they stop in reverse): the DNS
 * guard; the event store before the collector (it must subscribe before the
 * collector publishes, and stop after it, so what the collector drains on
 * stop is still written), and the alerts likewise; the service watch; the
 * tamper watchdog (it reads the guard's record of what it opened); the
 * integrity watch (it checks the guard's sockets are this process's); the
 * dashboard last (it reads the store, and serves from its own thread).
 */
export function daemonComponents(stateDir: string): Component[] {
  const collector = new Collector();
  const store = new EventStoreComponent({ open: () => openDefaultStore(stateDir), counters: () => collector.counters(), retention: retentionFromEnv() });
  const guard = new GuardComponent();
  return [guard, store, new AlertsComponent(), collector, new ServiceWatch(), new TamperWatch({ learned: () => guard.learnedEntries() }), new IntegrityWatch(), new DashboardComponent()];
}
