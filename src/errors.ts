/**
 * One error base class for everything Sluice throws on purpose. `code` is
 * stable (scripts match on it, `--json` prints it); `message` is for people:
 * capitalised, no final period, a colon before the detail, the bad value shown.
 */
export class SluiceError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }

  /** A plain object for `--json` output. */
  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message };
  }
}

/** Where in a policy file a problem is: 1-based line and column, and the YAML path. */
export interface SourcePosition {
  file: string;
  line: number;
  column: number;
  path: (string | number)[];
}

/** One problem found in a policy. A policy load collects all of them. */
export interface PolicyIssue extends SourcePosition {
  message: string;
  severity: 'error' | 'warning';
}

/** Formats an issue the way compilers do, so editors can jump to it. */
export function formatIssue(issue: PolicyIssue): string {
  const tag = issue.severity === 'warning' ? 'warning: ' : '';
  return `${issue.file}:${issue.line}:${issue.column}: ${tag}${issue.message}`;
}

/** A policy that cannot be loaded. Carries every error found, not just the first. */
export class PolicyError extends SluiceError {
  readonly issues: PolicyIssue[];

  constructor(issues: PolicyIssue[], options?: { cause?: unknown }) {
    const errors = issues.filter((i) => i.severity === 'error');
    const first = errors[0];
    const summary = first
      ? `Invalid policy: ${formatIssue(first)}${errors.length > 1 ? ` (and ${errors.length - 1} more)` : ''}`
      : 'Invalid policy';
    super('EPOLICY', summary, options);
    this.issues = issues;
  }

  override toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, issues: this.issues };
  }
}

/** The kernel refused a netlink request. `errno` is the positive errno value. */
export class NetlinkError extends SluiceError {
  readonly errno: number;
  readonly detail: string | undefined;

  constructor(errno: number, message: string, detail?: string) {
    super('ENETLINK', message + (detail ? `: ${detail}` : ''));
    this.errno = errno;
    this.detail = detail;
  }

  override toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, errno: this.errno };
  }
}

/** Bad command-line usage. Exit status 2, like most Unix tools. */
export class UsageError extends SluiceError {
  constructor(message: string) {
    super('EUSAGE', message);
  }
}

/** Something about the host (missing tool, no permission, no cgroup2 mount). */
export class SystemError extends SluiceError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
