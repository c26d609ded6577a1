import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { hostname } from 'node:os';
import { native } from '../native/native.js';
import { JOURNAL_SOCKET, journalEntry, journalKey } from '../runtime/journal.js';
import type { AlertSink } from '../policy/policy.js';
import { renderTemplate } from '../policy/webhook-template.js';
import type { AlertMessage } from './rollup.js';

/** A webhook or syslog peer that does not answer within this is a failed attempt (retried later). */
const NETWORK_TIMEOUT_MS = 10_000;

/**
 * The summary as chat text. Process and host names in it are chosen by
 * whoever ran the process or asked the name: `<!channel>`, `<https://x|y>`
 * and `@everyone` would page a whole channel or dress up a link. `&`, `<`
 * and `>` are escaped the way Slack and Mattermost read them, and every `@`
 * is followed by a zero-width space so it mentions nobody.
 */
export function chatText(text: string): string {
  // Markdown links ([text](url)) too, for Mattermost, Teams and Discord: a zero-width space between
  // `]` and `(` breaks the link and shows as nothing (a backslash would show in Slack).
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/@/g, '@\u200b').replace(/\]\(/g, ']\u200b(');
}

/**
 * The JSON a webhook receives: `text` (Slack, Mattermost, Microsoft Teams
 * incoming webhooks) and `content` (Discord, with mentions turned off)
 * carry the one-line summary, made safe for chat; `sluice` carries the
 * whole alert, as it is, for anything that reads more. A route's own
 * `template:` shapes the body instead (policy/webhook-template).
 */
export function webhookBody(m: AlertMessage, template?: string): string {
  const text = chatText(m.text);
  if (template !== undefined) {
    return renderTemplate(template, { text, message: m.message, trigger: m.trigger, severity: m.severity, route: m.route, count: m.count, first: m.first, last: m.last, rule: m.rule, who: m.who, destination: m.destination, alert: m });
  }
  return JSON.stringify({ text, content: text.slice(0, 2000), allowed_mentions: { parse: [] }, sluice: m });
}

/**
 * The signature headers when a secret is set: `X-Sluice-Timestamp` (Unix
 * seconds) and `X-Sluice-Signature: sha256=HEX`, the HMAC-SHA256 of
 * `TIMESTAMP.BODY` with the secret, so a receiver can check both who sent it
 * and that it is not a replay of an old one.
 */
export function signatureHeaders(secret: string, body: string, nowMs = Date.now()): Record<string, string> {
  const ts = String(Math.floor(nowMs / 1000));
  return { 'X-Sluice-Timestamp': ts, 'X-Sluice-Signature': `sha256=${createHmac('sha256', secret).update(`${ts}.${body}`).digest('hex')}` };
}

const SEVERITY = { critical: 2, warning: 4, info: 6 } as const;
/** Facility: daemon (3). */
const FACILITY = 3;
/** Private enterprise number for structured data IDs; 32473 is the one RFC 5612 reserves for documentation. */
const SD_ID = 'sluice@32473';

/** RFC 5424 PARAM-VALUE escaping: `"`, `\` and `]` are escaped; control characters (a newline in a program's path) become `?`. */
const sdValue = (v: string) => v.replace(/[\x00-\x1f\x7f]/g, '?').replace(/[\\"\]]/g, (c) => `\\${c}`);
/** Printable US-ASCII without spaces, at most `max` (HOSTNAME, APP-NAME, MSGID fields). */
const field = (v: string, max: number) => v.replace(/[^\x21-\x7e]/g, '_').slice(0, max) || '-';

/** The alert's fields every structured sink carries (the syslog structured data, the journal's SLUICE_* fields), in order. */
function alertFields(m: AlertMessage): [string, string | number | undefined][] {
  return [
    ['route', m.route],
    ['trigger', m.trigger],
    ['count', m.count],
    ['first', m.first],
    ['last', m.last],
    ['rule', m.rule],
    ['who', m.who],
    ['destination', m.destination],
  ];
}

/**
 * One RFC 5424 syslog message: `<PRI>1 TIMESTAMP HOSTNAME sluice PROCID
 * MSGID [sluice@32473 trigger=... count=... ...] MSG`, facility daemon,
 * severity from the alert (crit, warning, info), MSGID the trigger.
 */
export function syslogLine(m: AlertMessage, opts: { host?: string; pid?: number; now?: Date } = {}): string {
  const pri = FACILITY * 8 + SEVERITY[m.severity];
  const params = alertFields(m);
  const sd = `[${SD_ID}${params
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}="${sdValue(String(v))}"`)
    .join('')}]`;
  // One line, no control characters (names in it come from other processes).
  const msg = m.text.replace(/[\r\n]+/g, ' ').replace(/[\x00-\x1f\x7f]/g, '?');
  return `<${pri}>1 ${(opts.now ?? new Date()).toISOString()} ${field(opts.host ?? hostname(), 255)} sluice ${opts.pid ?? process.pid} ${field(m.trigger, 32)} ${sd} ${msg}`;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/**
 * One message for the local syslog socket, in the form the C library's
 * syslog(3) sends there (RFC 3164 without the host: `<PRI>Mmm dd hh:mm:ss
 * sluice[PID]: MSG`), which rsyslog and journald both parse on /dev/log:
 * facility daemon, severity from the alert; the route and count end the
 * message. At most `max` bytes (a datagram), cut on a character boundary.
 */
export function localSyslogLine(m: AlertMessage, opts: { pid?: number; now?: Date; max?: number } = {}): string {
  const now = opts.now ?? new Date();
  const pad = (n: number) => String(n).padStart(2, '0');
  const stamp = `${MONTHS[now.getMonth()]} ${String(now.getDate()).padStart(2, ' ')} ${pad(now.getHours())}:${pad(now.getMinutes())}:${pad(now.getSeconds())}`;
  const msg = `${m.text} (route ${m.route}, ${m.trigger}, count ${m.count})`.replace(/[\r\n]+/g, ' ').replace(/[\x00-\x1f\x7f]/g, '?');
  let line = `<${FACILITY * 8 + SEVERITY[m.severity]}>${stamp} sluice[${opts.pid ?? process.pid}]: ${msg}`;
  const max = opts.max ?? 4_000;
  while (Buffer.byteLength(line) > max) line = line.slice(0, -Math.max(1, Math.ceil((Buffer.byteLength(line) - max) / 4)));
  return line;
}

/** Delivers one alert to a sink; resolves when the sink took it, rejects with why it did not. */
export async function deliver(sink: AlertSink, m: AlertMessage, log: (message: string, fields: Record<string, unknown>) => void, opts: { journalSocket?: string } = {}): Promise<void> {
  switch (sink.kind) {
    case 'webhook':
      return deliverWebhook(sink.url, sink.secretFile, m, sink.template);
    case 'syslog':
      if (sink.transport === 'unix') return deliverUnix(sink.path, localSyslogLine(m), 'syslog');
      return sink.transport === 'udp' ? deliverSyslogUdp(sink.host, sink.port, syslogLine(m)) : deliverSyslogTcp(sink.host, sink.port, syslogLine(m));
    case 'exec':
      return deliverExec(sink.argv, sink.timeoutMs, m);
    case 'journal': {
      // Straight to journald when it runs, with the alert's fields (journalctl SLUICE_ALERT=tamper); else the daemon's log.
      // The trigger is `alert` there, as in the daemon's own lines about alerts.
      const named = alertFields(m).map(([k, v]) => [k === 'trigger' ? 'alert' : k, v] as const);
      const socket = opts.journalSocket ?? JOURNAL_SOCKET;
      if (!existsSync(socket)) {
        log(m.text, Object.fromEntries(named));
        return;
      }
      const fields = [['PRIORITY', SEVERITY[m.severity]], ['SYSLOG_IDENTIFIER', 'sluice'], ['SYSLOG_FACILITY', FACILITY], ['SLUICE_SEVERITY', m.severity], ...named.map(([k, v]) => [journalKey(k), v] as const)] as const;
      return deliverUnix(socket, journalEntry(m.text, fields), 'journal');
    }
  }
}

async function deliverWebhook(url: string, secretFile: string | null, m: AlertMessage, template: string | undefined): Promise<void> {
  const body = webhookBody(m, template);
  const headers: Record<string, string> = { 'Content-Type': 'application/json', 'User-Agent': 'sluice-alerts' };
  if (secretFile !== null) {
    let secret: string;
    try {
      secret = readFileSync(secretFile, 'utf8').trim();
    } catch (err) {
      throw new Error(`cannot read secret_file ${secretFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    if (secret.length === 0) throw new Error(`secret_file ${secretFile} is empty`);
    Object.assign(headers, signatureHeaders(secret, body));
  }
  // No redirects: an alert goes where the policy says, nowhere else.
  let res: Response;
  try {
    res = await fetch(url, { method: 'POST', headers, body, redirect: 'error', signal: AbortSignal.timeout(NETWORK_TIMEOUT_MS) });
  } catch (err) {
    // fetch says only "fetch failed"; why is in its cause (ECONNREFUSED, ENETUNREACH, a timeout, a TLS error).
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new Error(cause ? `${(err as Error).message}: ${cause.code ?? cause.message ?? String(cause)}` : (err as Error).message, { cause: err });
  }
  // Read (and bound) the answer so the connection is released.
  await res.arrayBuffer().catch(() => undefined);
  if (!res.ok) {
    // 4xx but 408 and 429: the receiver refuses this request as it is, and will again.
    const permanent = res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429;
    throw Object.assign(new Error(`HTTP ${res.status}`), { permanent });
  }
}

/** One datagram to a local socket; never blocks (a full queue is EAGAIN: retried later). */
async function deliverUnix(path: string, text: string, what: string): Promise<void> {
  try {
    native().unixDgramSend(path, text);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`${what}: ${path}: ${code === 'EAGAIN' ? 'its queue is full (EAGAIN)' : code === 'ENOENT' ? 'no such socket (ENOENT)' : code === 'ECONNREFUSED' ? 'nothing listens (ECONNREFUSED)' : (err as Error).message}`);
  }
}

function deliverSyslogUdp(host: string, port: number, line: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const timer = setTimeout(() => {
      sock.close();
      reject(new Error('syslog: no send within the timeout'));
    }, NETWORK_TIMEOUT_MS);
    sock.on('error', (err) => {
      clearTimeout(timer);
      sock.close();
      reject(err);
    });
    sock.send(Buffer.from(line), port, host, (err) => {
      clearTimeout(timer);
      sock.close();
      if (err) reject(err);
      else resolve();
    });
  });
}

/** TCP with octet counting (RFC 6587): `LEN SP MSG`, one connection per alert. */
function deliverSyslogTcp(host: string, port: number, line: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const frame = Buffer.from(line);
    const sock = connect({ host, port });
    sock.setTimeout(NETWORK_TIMEOUT_MS, () => sock.destroy(new Error('syslog: timed out')));
    sock.on('error', reject);
    sock.on('connect', () => {
      sock.end(Buffer.concat([Buffer.from(`${frame.length} `), frame]));
    });
    sock.on('close', (hadError) => {
      if (!hadError) resolve();
    });
  });
}

/**
 * The program gets the alert as JSON on its standard input; exit status 0 is
 * delivered. Argv as written, no shell, a minimal environment, its own
 * process group: at the timeout the whole group is killed, and the outcome
 * is the program's exit, not its pipes closing (a child it left running
 * cannot hold the route).
 */
function deliverExec(argv: string[], timeoutMs: number, m: AlertMessage): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['pipe', 'ignore', 'pipe'], env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' }, detached: true });
    let stderr = '';
    let timedOut = false;
    const killGroup = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, timeoutMs);
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < 500) stderr += d.toString();
    });
    child.stdin.on('error', () => undefined);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      // What it left behind in its group goes with it.
      killGroup();
      child.stderr.destroy();
      if (code === 0) resolve();
      else reject(new Error(timedOut ? `${argv[0]} killed after its ${timeoutMs} ms` : signal ? `${argv[0]} killed by ${signal}` : `${argv[0]} exited ${code}${stderr ? `: ${stderr.trim().slice(0, 200)}` : ''}`));
    });
    child.stdin.end(`${JSON.stringify(m)}\n`);
  });
}
