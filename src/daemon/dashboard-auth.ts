import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SluiceError } from '../errors.js';
import { formatListen, type ListenAddress } from '../policy/listen-address.js';

/**
 * Who may use the dashboard, and from where. Pure functions (the token file
 * aside), so each check is unit-tested as the attack on it:
 * - a token: 32 random bytes, base64url, in STATE/dashboard.token (root, 0600);
 * - a session cookie derived from it (HttpOnly, SameSite=Strict), set when
 *   a request carries the token once in `?token=`;
 * - the Host header must name the listen address itself (DNS rebinding: a
 *   page of evil.example whose name now resolves to 127.0.0.1 sends
 *   `Host: evil.example`, and is refused even with a valid cookie);
 * - state-changing requests must come from the dashboard's own origin.
 */

/** The token's form: 32 bytes in base64url without padding. */
export const TOKEN_FORM = /^[A-Za-z0-9_-]{43}$/;

/** The token file in a state directory. */
export function dashboardTokenPath(stateDir: string): string {
  return join(stateDir, 'dashboard.token');
}

/** A new token: 32 random bytes, base64url. */
export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * Reads the token file, refusing one that is not a regular file owned by
 * this user and readable by nobody else (a symlink is refused too), or
 * whose content is not a token.
 */
export function readDashboardToken(path: string): string {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    throw new SluiceError('EDASHBOARD', `Cannot read the dashboard token: ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new SluiceError('EDASHBOARD', `The dashboard token is not a regular file: ${path}`);
    if (st.uid !== process.getuid?.() || (st.mode & 0o077) !== 0) {
      throw new SluiceError('EDASHBOARD', `The dashboard token must be owned and readable by ${process.getuid?.() === 0 ? 'root' : 'this user'} only: ${path} (owner ${st.uid}, mode 0${(st.mode & 0o777).toString(8)})`);
    }
    const token = readFileSync(fd, 'utf8').trim();
    if (!TOKEN_FORM.test(token)) throw new SluiceError('EDASHBOARD', `The dashboard token is not 32 bytes in base64url: ${path}`);
    return token;
  } finally {
    closeSync(fd);
  }
}

/** The dashboard's token: made (mode 0600, never overwritten) the first time, then read with readDashboardToken's checks. */
export function ensureDashboardToken(stateDir: string): string {
  const path = dashboardTokenPath(stateDir);
  try {
    writeFileSync(path, `${newToken()}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new SluiceError('EDASHBOARD', `Cannot write the dashboard token: ${path}: ${(err as Error).message}`);
  }
  return readDashboardToken(path);
}

/** The sign-in link `sluice dashboard` prints. */
export function signInUrl(listen: ListenAddress, token: string): string {
  return `http://${formatListen(listen)}/?token=${token}`;
}

/**
 * The credentials a request may present, prepared once: the token and the
 * session cookie's value (an HMAC of a fixed label under the token, so the
 * cookie never holds the token itself), each kept only as a SHA-256 digest
 * so that every comparison is between equal-length values, in constant time.
 */
export class DashboardCredentials {
  readonly cookieName: string;
  private readonly tokenDigest: Buffer;
  private readonly sessionDigest: Buffer;
  readonly session: string;
  /**
   * The CSRF token state-changing requests carry in `X-Sluice-CSRF`: an HMAC
   * of another fixed label under the token, so it is tied to the one session
   * the token makes, differs from the cookie, and is readable only through
   * a signed-in GET (`/api/session`; no CORS, so no other site's page can
   * read it). A forged request rides on the cookie alone and lacks it.
   */
  readonly csrf: string;
  private readonly csrfDigest: Buffer;

  constructor(token: string, port: number) {
    if (!TOKEN_FORM.test(token)) throw new SluiceError('EDASHBOARD', 'The dashboard token is not 32 bytes in base64url');
    this.tokenDigest = digest(token);
    this.session = createHmac('sha256', token).update('sluice dashboard session v1').digest('base64url');
    this.sessionDigest = digest(this.session);
    this.csrf = createHmac('sha256', token).update('sluice dashboard csrf v1').digest('base64url');
    this.csrfDigest = digest(this.csrf);
    // Cookies are per host, not per port: the port in the name keeps two dashboards apart.
    this.cookieName = `sluice_session_${port}`;
  }

  /** The token, compared in constant time (digests of both sides: lengths never leak). */
  tokenMatches(candidate: string | undefined | null): boolean {
    if (typeof candidate !== 'string' || candidate.length === 0 || candidate.length > 512) return false;
    return timingSafeEqual(digest(candidate), this.tokenDigest);
  }

  /** The session cookie's value, compared in constant time. */
  sessionMatches(candidate: string | undefined | null): boolean {
    if (typeof candidate !== 'string' || candidate.length === 0 || candidate.length > 512) return false;
    return timingSafeEqual(digest(candidate), this.sessionDigest);
  }

  /** The CSRF header's value, compared in constant time. */
  csrfMatches(candidate: string | undefined | null): boolean {
    if (typeof candidate !== 'string' || candidate.length === 0 || candidate.length > 512) return false;
    return timingSafeEqual(digest(candidate), this.csrfDigest);
  }

  /**
   * Whether a request is signed in: `Authorization: Bearer TOKEN`, or the
   * session cookie. A header that is present but wrong is a refusal, not a
   * fall-through to the cookie.
   */
  authorized(authorization: string | undefined | null, cookieHeader: string | undefined | null): boolean {
    if (authorization !== undefined && authorization !== null && authorization !== '') {
      const m = /^Bearer ([\x21-\x7e]{1,512})$/.exec(authorization);
      return m !== null && this.tokenMatches(m[1]);
    }
    return this.sessionMatches(cookieValue(cookieHeader, this.cookieName));
  }

  /** The Set-Cookie header value for a signed-in browser. */
  setCookie(): string {
    return `${this.cookieName}=${this.session}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${SESSION_MAX_AGE_S}`;
  }
}

/** A session cookie lasts this long (a day); the link signs in again. */
export const SESSION_MAX_AGE_S = 86_400;

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/**
 * The value of cookie `name` in a Cookie header, or null. Only the first
 * occurrence counts; a header over 8 KiB is ignored whole.
 */
export function cookieValue(header: string | undefined | null, name: string): string | null {
  if (typeof header !== 'string' || header.length > 8_192) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}

/**
 * The Host values the dashboard answers to: its listen address exactly, and
 * `localhost:PORT` (what a person types). Anything else is a page on another
 * name that resolved to loopback (DNS rebinding), and is refused.
 */
export function allowedHosts(listen: ListenAddress): string[] {
  return [formatListen(listen), `localhost:${listen.port}`];
}

/** The Host header is one of allowedHosts (compared case-insensitively, as host names are). */
export function hostAllowed(host: string | undefined | null, listen: ListenAddress): boolean {
  if (typeof host !== 'string' || host.length > 300) return false;
  return allowedHosts(listen).includes(host.toLowerCase());
}

/**
 * A state-changing request comes from the dashboard's own page: its Origin
 * is `http://` and the (already checked) Host. A missing Origin is refused:
 * every current browser sends it on a POST.
 */
export function sameOrigin(origin: string | undefined | null, host: string | undefined | null, listen: ListenAddress): boolean {
  if (typeof origin !== 'string' || !hostAllowed(host, listen)) return false;
  return origin.toLowerCase() === `http://${(host as string).toLowerCase()}`;
}
