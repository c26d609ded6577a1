import { readFileSync } from 'node:fs';

/**
 * Zones where anyone can create names (hosting, CDN and cloud platforms):
 * a wildcard over one of them would allow every customer's names, so
 * `suggest` never writes one, and flags names under them. Compared as DNS
 * suffixes: `*.amazonaws.com` covers `s3.amazonaws.com` and
 * `x.compute-1.amazonaws.com` too.
 */
export const SHARED_ZONES: readonly string[] = Object.freeze([
  'github.io',
  'githubusercontent.com',
  'gitlab.io',
  'cloudfront.net',
  'amazonaws.com',
  's3.amazonaws.com',
  'elasticbeanstalk.com',
  'herokuapp.com',
  'herokudns.com',
  'azurewebsites.net',
  'azureedge.net',
  'blob.core.windows.net',
  'cloudapp.net',
  'trafficmanager.net',
  'appspot.com',
  'googleusercontent.com',
  'storage.googleapis.com',
  'run.app',
  'cloudfunctions.net',
  'firebaseapp.com',
  'firebaseio.com',
  'web.app',
  'netlify.app',
  'netlify.com',
  'vercel.app',
  'now.sh',
  'pages.dev',
  'workers.dev',
  'r2.dev',
  'blogspot.com',
  'wordpress.com',
  'tumblr.com',
  'fly.dev',
  'onrender.com',
  'glitch.me',
  'repl.co',
  'ngrok.io',
  'ngrok-free.app',
  'fastly.net',
  'akamaized.net',
  'edgekey.net',
  'digitaloceanspaces.com',
  'ondigitalocean.app',
  'surge.sh',
  'bitbucket.io',
  'readthedocs.io',
  'duckdns.org',
  'no-ip.org',
  'dyndns.org',
]);

/** The shared zone a name lies under (or is), if any. */
export function sharedZoneOf(name: string): string | undefined {
  let best: string | undefined;
  for (const z of SHARED_ZONES) if ((name === z || name.endsWith(`.${z}`)) && (!best || z.length > best.length)) best = z;
  return best;
}

/** Debian's copy of the Public Suffix List (package publicsuffix). */
const PSL_FILE = '/usr/share/publicsuffix/public_suffix_list.dat';

/** Second-level labels under a two-letter country code that are public suffixes themselves, when no list is installed. */
const FALLBACK_SLDS = new Set(['co', 'com', 'net', 'org', 'gov', 'ac', 'edu', 'or', 'ne', 'go', 'gob', 'mil', 'nic', 'ltd', 'plc', 'sch']);

interface SuffixRules {
  exact: Set<string>;
  wild: Set<string>;
  except: Set<string>;
}

let rules: SuffixRules | null | undefined;

function load(file: string): SuffixRules | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  const r: SuffixRules = { exact: new Set(), wild: new Set(), except: new Set() };
  for (const raw of text.split('\n')) {
    const line = raw.trim().split(/\s/)[0] ?? '';
    if (line === '' || line.startsWith('//')) continue;
    const l = line.toLowerCase();
    if (l.startsWith('!')) r.except.add(l.slice(1));
    else if (l.startsWith('*.')) r.wild.add(l.slice(2));
    else r.exact.add(l);
  }
  return r;
}

/** For tests: use this list file (undefined: the system's, loaded on first use). */
export function usePublicSuffixList(file?: string): void {
  rules = file === undefined ? undefined : load(file);
}

function isSuffix(r: SuffixRules | null, s: string): boolean {
  if (sharedZoneOf(s) === s) return true;
  if (!r) {
    const labels = s.split('.');
    if (labels.length === 1) return true;
    const tld = labels[labels.length - 1] as string;
    return labels.length === 2 && tld.length === 2 && FALLBACK_SLDS.has(labels[0] as string);
  }
  if (r.except.has(s)) return false;
  if (r.exact.has(s)) return true;
  const dot = s.indexOf('.');
  if (dot > 0 && r.wild.has(s.slice(dot + 1))) return true;
  // The list's default rule: any single label is a public suffix.
  return dot < 0;
}

/**
 * The registered domain of a name (one label below its public suffix):
 * `a.b.example.co.uk` -> `example.co.uk`; shared zones count as public
 * suffixes (`x.y.github.io` -> `y.github.io`). Undefined when the name is a
 * public suffix itself. Uses the system's Public Suffix List when installed,
 * else a short built-in rule.
 */
export function registeredDomain(name: string): string | undefined {
  if (rules === undefined) rules = load(PSL_FILE);
  const labels = name.split('.');
  for (let i = 1; i < labels.length; i++) {
    const suffix = labels.slice(i).join('.');
    if (isSuffix(rules, suffix)) return labels.slice(i - 1).join('.');
  }
  return undefined;
}
