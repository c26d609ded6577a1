import { parseTableComment } from '../compile/kernel-names.js';
import type { Ruleset, SetDef, SetElem } from '../compile/ruleset.js';
import type { CounterValue, LiveTable } from './nft-decode.js';

/**
 * What Sluice needs from the kernel's packet filter. Two implementations share
 * one contract test suite: the kernel one (netlink) and an in-memory fake used
 * by unit tests of everything above this layer.
 */
export interface Netfilter {
  /** Atomically replaces the table with `ruleset`. On failure the previous table stays. */
  replace(ruleset: Ruleset, opts?: { carryDynamic?: boolean }): void;
  /**
   * Removes the table. Returns false when there was none. Never touches
   * other tables. `unowned`: a table this writer made without flags, whose
   * traffic is gone (a run's, once its veth is): removed in one transaction
   * without reading it first, and without forgetting its DNS redirect's
   * conntrack bindings (there is nothing left to use them); returns true.
   */
  remove(table: string, opts?: { unowned?: boolean }): boolean;
  /**
   * The netlink socket's descriptor (the kernel writer): a child process it
   * is passed to holds the socket after this writer closes it, and so does
   * the closing (which waits for the kernel to free what the last
   * transaction deleted: a grace period). Absent: no socket.
   */
  socketFd?(): number;
  /** Reads the table back, or null if absent. */
  read(table: string, opts?: ReadOptions): LiveTable | null;
  /** Named counter values of the table (empty when absent). */
  counters(table: string): Map<string, CounterValue>;
  /**
   * Adds elements to one or more sets in one transaction (timeouts per
   * element), after deleting each change's `remove` elements: all or
   * nothing. Deleting an element the set does not hold fails the transaction.
   */
  addElements(table: string, changes: ElementChange[]): void;
  /**
   * Whether adding an element a set holds sets its timeout anew (Linux 6.12+).
   * Either way `refresh` in addElements extends the element; this says how.
   */
  timeoutUpdates(): boolean;
  /**
   * Forgets the tracked flows whose conntrack mark ANDed with `mask` is
   * `value` (the flows of an epoch about to be used again). Best effort.
   */
  forgetFlows(value: number, mask: number): void;
  /**
   * Owned tables (policy `owned_table`, the daemon's writer only): takes an
   * owned ruleset's table that no socket holds; `release` lets go of it for
   * another writer until the next `hold`; `holds` says which. Absent: this
   * writer never owns tables.
   */
  hold?(table: string): 'held' | 'taken' | 'absent';
  release?(): void;
  holds?(): boolean;
  /** The netlink port of this writer's socket (an owned table's recorded owner). */
  portId?(): number;
  /**
   * The base chains on the forward hook, of every table and IP family (ip,
   * ip6, inet), with their policy: what forwarded packets (a `sluice run`'s)
   * must also get through. Absent: this writer cannot list other tables.
   */
  forwardChains?(): ForwardChain[];
  close(): void;
}

/** A base chain on the forward hook, in any table. */
export interface ForwardChain {
  family: 'ip' | 'ip6' | 'inet';
  table: string;
  chain: string;
  policy: 'accept' | 'drop';
  /** How many rules it has (a drop policy with none lets nothing through). */
  rules: number;
}

/** Elements to add to one set, and elements to delete from it first. */
export interface ElementChange {
  set: Pick<SetDef, 'name' | 'key' | 'interval'>;
  elems: SetElem[];
  remove?: SetElem[];
  /**
   * Elements the set already holds (until `expiresAt`, ms since the epoch, by
   * the writer's clock, which runs ahead of the kernel's expiry), to be kept
   * for their new `timeoutMs` from now. After the transaction each is in the
   * set with that timeout, whatever the kernel version, and whether or not it
   * expired meanwhile.
   */
  refresh?: { elem: SetElem; expiresAt: number }[];
}

export interface ReadOptions {
  /** Which sets' elements to read: static ones (the default, for drift checks), dynamic (DNS-learned), all, or none. */
  elements?: 'static' | 'dynamic' | 'all' | 'none';
}

export type { CounterValue, LiveTable };

/**
 * Whether a replacement carries DNS-learned addresses over from the live
 * table: never from audit into enforce (what audit mode learned came from
 * watching traffic it did not control).
 */
export function carriesLearned(liveComment: string, nextComment: string): boolean {
  const mode = (comment: string) => parseTableComment(comment)?.mode;
  return !(mode(liveComment) === 'audit' && mode(nextComment) === 'enforce');
}

/**
 * Whether a live set's learned elements belong in this set of the next
 * ruleset: same name, key and comment (the comment hashes the rule's action
 * and names). Never a meter's: a copied element would have no rate-limit
 * state, and the kernel would then hold back every record of that user as
 * over its share until the element expired.
 */
export function sameLearnedSet(live: SetDef, next: SetDef): boolean {
  return next.dynamic && !next.meter && !live.meter && live.name === next.name && live.key === next.key && live.comment === next.comment;
}
