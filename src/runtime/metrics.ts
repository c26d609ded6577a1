/**
 * A small Prometheus registry (text exposition format 0.0.4). Components
 * register counters and gauges; values computed at scrape time (queue
 * lengths, set sizes) register a callback. A scrape takes a snapshot here
 * (plain data, cheap: no system calls beyond what the callbacks do) and the
 * text is rendered elsewhere, off the event loop that answers DNS (see
 * metrics-server.ts).
 */

type Labels = Record<string, string>;

/** One metric family with its samples: plain data, so it can cross to a worker thread. */
export interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  samples: { labels: Labels; value: number }[];
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labelText(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  if (keys.length === 0) return '';
  return `{${keys.map((k) => `${k}="${escapeLabel(labels[k] ?? '')}"`).join(',')}}`;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

abstract class Metric {
  protected values = new Map<string, { labels: Labels; value: number }>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge',
  ) {
    if (!NAME.test(name)) throw new Error(`bad metric name ${name}`);
  }

  protected key(labels: Labels): string {
    return labelText(labels);
  }

  family(): Family {
    return { name: this.name, help: this.help, type: this.type, samples: [...this.values.values()].map(({ labels, value }) => ({ labels: { ...labels }, value })) };
  }
}

export class Counter extends Metric {
  constructor(name: string, help: string) {
    super(name, help, 'counter');
  }

  inc(labels: Labels = {}, by = 1): void {
    const k = this.key(labels);
    const cur = this.values.get(k);
    if (cur) cur.value += by;
    else this.values.set(k, { labels: { ...labels }, value: by });
  }

  get(labels: Labels = {}): number {
    return this.values.get(this.key(labels))?.value ?? 0;
  }
}

export class Gauge extends Metric {
  constructor(name: string, help: string) {
    super(name, help, 'gauge');
  }

  set(value: number, labels: Labels = {}): void {
    this.values.set(this.key(labels), { labels: { ...labels }, value });
  }

  get(labels: Labels = {}): number {
    return this.values.get(this.key(labels))?.value ?? 0;
  }
}

/** Values computed at scrape time. */
export type Collector = () => Family[];

/**
 * The exposition text of some families. Families of one name are merged
 * (several components report one metric under different labels, such as
 * sluice_events_dropped_total{stage}): Prometheus refuses a scrape that
 * declares a name twice.
 */
export function renderExposition(families: Family[]): string {
  const byName = new Map<string, Family>();
  for (const f of families) {
    if (!NAME.test(f.name)) continue;
    const seen = byName.get(f.name);
    if (seen) seen.samples = [...seen.samples, ...f.samples];
    else byName.set(f.name, { ...f, samples: [...f.samples] });
  }
  const parts: string[] = [];
  for (const f of byName.values()) {
    const lines = [`# HELP ${f.name} ${f.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${f.name} ${f.type}`];
    for (const s of f.samples) lines.push(`${f.name}${labelText(s.labels)} ${Number.isFinite(s.value) ? s.value : 0}`);
    parts.push(lines.join('\n'));
  }
  return `${parts.join('\n')}\n`;
}

export class Registry {
  private metrics = new Map<string, Metric>();
  private collectors: Collector[] = [];
  private collectorErrors = 0;

  counter(name: string, help: string): Counter {
    const m = this.metrics.get(name);
    if (m) return m as Counter;
    const c = new Counter(name, help);
    this.metrics.set(name, c);
    return c;
  }

  gauge(name: string, help: string): Gauge {
    const m = this.metrics.get(name);
    if (m) return m as Gauge;
    const g = new Gauge(name, help);
    this.metrics.set(name, g);
    return g;
  }

  collect(c: Collector): void {
    this.collectors.push(c);
  }

  /** Every family's current values. A collector that throws is left out (and named in sluice_metrics_collector_errors_total), not the whole scrape. */
  snapshot(): Family[] {
    const out = [...this.metrics.values()].map((m) => m.family());
    let errors = 0;
    for (const c of this.collectors) {
      try {
        out.push(...c());
      } catch {
        errors++;
      }
    }
    this.collectorErrors += errors;
    out.push({ name: 'sluice_metrics_collector_errors_total', help: 'Scrape-time collectors that failed (their metrics were left out)', type: 'counter', samples: [{ labels: {}, value: this.collectorErrors }] });
    return out;
  }

  /** The exposition text for GET /metrics. */
  render(): string {
    return renderExposition(this.snapshot());
  }
}
