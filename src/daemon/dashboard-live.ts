/**
 * Server-Sent Events for the dashboard's live view. Events arrive in
 * batches from the daemon's main thread; each client has a bounded queue,
 * flushed as one SSE message per interval. A client that reads slowly
 * (its stream's buffer full) keeps at most `queueMax` events; the rest are
 * dropped and counted, and the count is sent with the next batch, so a
 * slow browser costs bounded memory and never slows anyone else.
 */

/** What the live view shows: a flow event or a DNS query, slimmed by the main thread. */
export type LiveEvent = { kind: 'flow' | 'dns'; time: number } & Record<string, unknown>;

export interface LiveLimits {
  /** Live streams open at once (all peers). */
  maxClients: number;
  /** Events waiting per client; beyond it they are dropped and counted. */
  queueMax: number;
  flushMs: number;
  /** A comment line this often keeps idle streams (and their idle timeouts) alive. */
  heartbeatMs: number;
}

export const LIVE_LIMITS: LiveLimits = { maxClients: 32, queueMax: 2_000, flushMs: 250, heartbeatMs: 15_000 };

interface Client {
  queue: LiveEvent[];
  dropped: number;
  controller: ReadableStreamDefaultController<Uint8Array>;
}

const enc = new TextEncoder();

export class LiveHub {
  /** Events dropped for slow clients, in all. */
  dropped = 0;
  private readonly clients = new Set<Client>();
  private flushTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;

  /** `onWatchers` hears the number of clients whenever it changes (the main thread forwards events only while someone watches). */
  constructor(
    private readonly limits: LiveLimits = LIVE_LIMITS,
    private readonly onWatchers: (n: number) => void = () => undefined,
  ) {}

  get size(): number {
    return this.clients.size;
  }

  /** A new stream, or null when `maxClients` are open. */
  open(): ReadableStream<Uint8Array> | null {
    if (this.clients.size >= this.limits.maxClients) return null;
    let client: Client | undefined;
    const stream = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          client = { queue: [], dropped: 0, controller };
          this.clients.add(client);
          controller.enqueue(enc.encode(`retry: 3000\n: connected\n\n`));
          this.arm();
          this.onWatchers(this.clients.size);
        },
        cancel: () => {
          if (client) this.remove(client);
        },
      },
      { highWaterMark: 8 },
    );
    return stream;
  }

  /** Queues a batch for every client. */
  publish(events: LiveEvent[]): void {
    for (const c of this.clients) {
      const room = this.limits.queueMax - c.queue.length;
      if (room >= events.length) c.queue.push(...events);
      else {
        if (room > 0) c.queue.push(...events.slice(0, room));
        const lost = events.length - Math.max(0, room);
        c.dropped += lost;
        this.dropped += lost;
      }
    }
  }

  /** Sends each client's queue as one message, unless its stream is full (then it waits, bounded). */
  flush(): void {
    for (const c of this.clients) {
      if (c.queue.length === 0 && c.dropped === 0) continue;
      if ((c.controller.desiredSize ?? 0) <= 0) continue;
      const data = JSON.stringify({ events: c.queue, dropped: c.dropped });
      c.queue = [];
      c.dropped = 0;
      this.send(c, `event: events\ndata: ${data}\n\n`);
    }
  }

  private heartbeat(): void {
    for (const c of this.clients) if ((c.controller.desiredSize ?? 0) > 0) this.send(c, ': keepalive\n\n');
  }

  private send(c: Client, text: string): void {
    try {
      c.controller.enqueue(enc.encode(text));
    } catch {
      this.remove(c);
    }
  }

  private arm(): void {
    // Unref'd: open streams (their sockets) keep the thread alive, not these timers.
    this.flushTimer ??= setInterval(() => this.flush(), this.limits.flushMs).unref();
    this.heartbeatTimer ??= setInterval(() => this.heartbeat(), this.limits.heartbeatMs).unref();
  }

  private remove(c: Client): void {
    if (!this.clients.delete(c)) return;
    this.onWatchers(this.clients.size);
    if (this.clients.size === 0) {
      clearInterval(this.flushTimer);
      clearInterval(this.heartbeatTimer);
      this.flushTimer = undefined;
      this.heartbeatTimer = undefined;
    }
  }

  /** Ends every stream. */
  close(): void {
    for (const c of [...this.clients]) {
      try {
        c.controller.close();
      } catch {
        // Already closed by its reader.
      }
      this.remove(c);
    }
  }
}
