import { chmodSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { SluiceError } from '../errors.js';

/**
 * The daemon's control socket: a Unix socket in the state directory (mode
 * 0600, so only root talks to it), one JSON request per line, JSON lines
 * back. A handler returns one result, or streams until the client leaves.
 */

export type Reply = (value: unknown) => void;
export interface Handler {
  /** One-shot: the returned value is the answer. */
  call?: (args: Record<string, unknown>) => unknown | Promise<unknown>;
  /** Streaming: send values until the returned function is called (client gone). */
  stream?: (args: Record<string, unknown>, send: Reply) => () => void;
}

const MAX_LINE = 64 * 1024;

export class ControlServer {
  private server: Server | undefined;
  private handlers = new Map<string, Handler>();
  private clients = new Set<Socket>();

  constructor(readonly path: string) {}

  handle(command: string, h: Handler): void {
    this.handlers.set(command, h);
  }

  async start(): Promise<void> {
    rmSync(this.path, { force: true });
    this.server = createServer((sock) => this.serve(sock));
    await new Promise<void>((resolve, reject) => {
      this.server?.once('error', reject);
      this.server?.listen(this.path, () => resolve());
    });
    chmodSync(this.path, 0o600);
  }

  private serve(sock: Socket): void {
    this.clients.add(sock);
    let buf = '';
    const stops: (() => void)[] = [];
    const send = (v: unknown) => {
      if (!sock.destroyed) sock.write(`${JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x))}\n`);
    };
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_LINE) {
        send({ error: { code: 'ETOOLONG', message: 'request line too long' } });
        sock.destroy();
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        void this.dispatch(line, send, stops);
      }
    });
    const cleanup = () => {
      this.clients.delete(sock);
      for (const s of stops) s();
      stops.length = 0;
    };
    sock.on('close', cleanup);
    sock.on('error', cleanup);
  }

  private async dispatch(line: string, send: Reply, stops: (() => void)[]): Promise<void> {
    let req: { cmd?: unknown; args?: unknown };
    try {
      req = JSON.parse(line) as { cmd?: unknown; args?: unknown };
    } catch {
      send({ error: { code: 'EBADREQUEST', message: 'request is not JSON' } });
      return;
    }
    const h = typeof req.cmd === 'string' ? this.handlers.get(req.cmd) : undefined;
    const args = req.args && typeof req.args === 'object' && !Array.isArray(req.args) ? (req.args as Record<string, unknown>) : {};
    if (!h) {
      send({ error: { code: 'EUNKNOWN', message: `unknown command ${JSON.stringify(req.cmd)}` } });
      return;
    }
    try {
      if (h.stream) stops.push(h.stream(args, send));
      else if (h.call) send({ result: await h.call(args) });
    } catch (err) {
      send({ error: { code: err instanceof SluiceError ? err.code : 'EINTERNAL', message: (err as Error).message } });
    }
  }

  async stop(): Promise<void> {
    for (const c of this.clients) c.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    rmSync(this.path, { force: true });
  }
}

/** Client side: one request, one answer. Throws ENODAEMON when nothing listens. */
export function controlCall(path: string, cmd: string, args: Record<string, unknown> = {}, timeoutMs = 10_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new SluiceError('ETIMEOUT', `The daemon did not answer ${cmd} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(`${JSON.stringify({ cmd, args })}\n`));
    sock.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      sock.end();
      const msg = JSON.parse(buf.slice(0, nl)) as { result?: unknown; error?: { code: string; message: string } };
      if (msg.error) reject(new SluiceError(msg.error.code, msg.error.message));
      else resolve(msg.result);
    });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
          ? new SluiceError('ENODAEMON', `The Sluice daemon is not running (no control socket at ${path})`)
          : err,
      );
    });
  });
}

/** Client side: a stream of values until `stop` is called or the daemon goes away. */
export function controlStream(path: string, cmd: string, args: Record<string, unknown>, onValue: (v: unknown) => void): Promise<{ stop: () => void; done: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = '';
    let done!: () => void;
    const finished = new Promise<void>((r) => (done = r));
    sock.setEncoding('utf8');
    sock.on('connect', () => {
      sock.write(`${JSON.stringify({ cmd, args })}\n`);
      resolve({ stop: () => sock.destroy(), done: finished });
    });
    sock.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          onValue(JSON.parse(line));
        } catch {
          /* ignore a bad line */
        }
      }
    });
    sock.on('close', () => done());
    sock.on('error', (err: NodeJS.ErrnoException) => {
      reject(
        err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
          ? new SluiceError('ENODAEMON', `The Sluice daemon is not running (no control socket at ${path})`)
          : err,
      );
      done();
    });
  });
}
