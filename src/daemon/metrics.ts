/**
 * A small Prometheus registry (text exposition format 0.0.4). Components
 * register counters and gauges; collectors computed at scrape time (kernel
 * counters, set sizes) register a callback.
 */

type Labels = Record<string, string>;

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

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help.replace(/\n/g, ' ')}`, `# TYPE ${this.name} ${this.type}`];
    for (const { labels, value } of this.values.values()) lines.push(`${this.name}${labelText(labels)} ${Number.isFinite(value) ? value : 0}`);
    return lines.join('\n');
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
export type Collector = () => { name: string; help: string; type: 'counter' | 'gauge'; samples: { labels: Labels; value: number }[] }[];

export class Registry {
  private metrics = new Map<string, Metric>();
  private collectors: Collector[] = [];

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

  /** The exposition text for GET /metrics. */
  render(): string {
    const parts = [...this.metrics.values()].map((m) => m.render());
    for (const c of this.collectors) {
      for (const fam of c()) {
        if (!NAME.test(fam.name)) continue;
        const lines = [`# HELP ${fam.name} ${fam.help}`, `# TYPE ${fam.name} ${fam.type}`];
        for (const s of fam.samples) lines.push(`${fam.name}${labelText(s.labels)} ${Number.isFinite(s.value) ? s.value : 0}`);
        parts.push(lines.join('\n'));
      }
    }
    return `${parts.join('\n')}\n`;
  }
}
