import { attrMap, attrStr, attrU32, MalformedNetlink, parseAttrs, parseMessages, type NlMsg } from './nl-attr.js';
import { MSG, NFNL_SUBSYS_NFTABLES } from './nl-constants.js';

/** NFTA_GEN_* (linux/netfilter/nf_tables.h): what a NEWGEN notification says about the transaction it closes. */
const GEN = { ID: 1, PROC_PID: 2, PROC_NAME: 3 } as const;
/** Descriptions kept per transaction: a flush of a large set is one line with a count, never thousands. */
const MAX_CHANGES = 32;

/** One committed nf_tables transaction that touched the watched table. */
export interface NftTransaction {
  /** The ruleset generation the transaction made (NFTA_GEN_ID). */
  generation?: number;
  /** The committing task (the kernel's `current`: a thread id) and its name, when the kernel says. */
  pid?: number;
  comm?: string;
  /** What it did to the table, one line per kind of change, with counts: "deleted table", "added elements to set a_api_4 (2)". Empty for this process's own. */
  changes: string[];
  /** Committed by this process (its messages were not read). */
  own?: boolean;
}

/** What one notification says, when it is about the watched table. */
export interface NftChange {
  /** The line it counts under: "deleted rule in chain output". */
  what: string;
  /** How many objects (elements in a set-element message, otherwise 1). */
  count: number;
}

const VERB: Record<number, string> = {
  [MSG.NEWTABLE]: 'added or changed table',
  [MSG.DELTABLE]: 'deleted table',
  [MSG.NEWCHAIN]: 'added or changed chain',
  [MSG.DELCHAIN]: 'deleted chain',
  [MSG.NEWRULE]: 'added or replaced rule',
  [MSG.DELRULE]: 'deleted rule',
  [MSG.NEWSET]: 'added or changed set',
  [MSG.DELSET]: 'deleted set',
  [MSG.NEWSETELEM]: 'added element',
  [MSG.DELSETELEM]: 'deleted element',
  [MSG.NEWOBJ]: 'added or changed object',
  [MSG.DELOBJ]: 'deleted object',
};

/** Printable, bounded: names in notifications come from whoever committed, not only from Sluice. */
function safeName(s: string | undefined): string {
  return (s ?? '?').replace(/[^\x21-\x7e]/g, '?').slice(0, 64);
}

/**
 * Reads one nf_tables notification. `gen` for the NEWGEN that closes every
 * transaction; a change when the message is about `table` in `family`;
 * null for anything else (another table, another family, another
 * subsystem). Throws MalformedNetlink for broken attributes.
 */
export function parseNftNotification(msg: NlMsg, table: string, family: number): { gen: { id?: number; pid?: number; comm?: string } } | { change: NftChange } | null {
  if (msg.type >> 8 !== NFNL_SUBSYS_NFTABLES) return null;
  const type = msg.type & 0xff;
  if (msg.payload.length < 4) throw new MalformedNetlink('nf_tables notification shorter than its header');
  if (type === MSG.NEWGEN) {
    const a = attrMap(msg.payload, 4);
    const gen: { id?: number; pid?: number; comm?: string } = {};
    const id = attrU32(a.get(GEN.ID));
    const pid = attrU32(a.get(GEN.PROC_PID));
    const comm = attrStr(a.get(GEN.PROC_NAME));
    if (id !== undefined) gen.id = id;
    if (pid !== undefined) gen.pid = pid;
    if (comm !== undefined) gen.comm = safeName(comm);
    return { gen };
  }
  const verb = VERB[type];
  if (verb === undefined || msg.payload[0] !== family) return null;
  const attrs = parseAttrs(msg.payload, 4);
  // Attribute 1 is the table's name in every object's message (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE...).
  const tableName = attrStr(attrs.find((x) => x.type === 1)?.data);
  if (tableName !== table) return null;
  const str = (t: number) => safeName(attrStr(attrs.find((x) => x.type === t)?.data));
  switch (type) {
    case MSG.NEWTABLE:
    case MSG.DELTABLE:
      return { change: { what: verb, count: 1 } };
    case MSG.NEWCHAIN:
    case MSG.DELCHAIN:
      return { change: { what: `${verb} ${str(3)}`, count: 1 } };
    case MSG.NEWRULE:
    case MSG.DELRULE:
      return { change: { what: `${verb} in chain ${str(2)}`, count: 1 } };
    case MSG.NEWSETELEM:
    case MSG.DELSETELEM: {
      const list = attrs.find((x) => x.type === 3);
      const count = list ? parseAttrs(list.data).length : 0;
      return { change: { what: `${verb}s ${type === MSG.NEWSETELEM ? 'to' : 'from'} set ${str(2)}`, count } };
    }
    default:
      // Sets and objects: the name is attribute 2.
      return { change: { what: `${verb} ${str(2)}`, count: 1 } };
  }
}

/** Notifications held per transaction until its NEWGEN says whose it is; beyond, they are counted, not read. */
const MAX_PENDING = 4_096;

/**
 * Groups notifications into transactions: the kernel sends a transaction's
 * object notifications, then the NEWGEN that closes it (under its commit
 * mutex, so transactions never interleave). A transaction committed by this
 * process (`isOwn`: the DNS guard writes one per batch of answers, thousands
 * a second) is reported as its own without reading its messages; any other
 * is read, and reported when it touched the table.
 */
export class TransactionGrouper {
  private pending: NlMsg[] = [];
  private unread = 0;

  constructor(
    private table: string,
    private family: number,
    private onTransaction: (t: NftTransaction) => void,
    private isOwn: (pid: number) => boolean = () => false,
  ) {}

  /** Feeds one message; throws MalformedNetlink (the caller then checks the table as a whole). */
  feed(msg: NlMsg): void {
    if (msg.type >> 8 !== NFNL_SUBSYS_NFTABLES) return;
    if ((msg.type & 0xff) !== MSG.NEWGEN) {
      if (this.pending.length < MAX_PENDING) this.pending.push(msg);
      else this.unread++;
      return;
    }
    const pending = this.pending;
    const unread = this.unread;
    this.pending = [];
    this.unread = 0;
    const r = parseNftNotification(msg, this.table, this.family);
    if (r === null || !('gen' in r) || (pending.length === 0 && unread === 0)) return;
    const t: NftTransaction = { changes: [] };
    if (r.gen.id !== undefined) t.generation = r.gen.id;
    if (r.gen.pid !== undefined) t.pid = r.gen.pid;
    if (r.gen.comm !== undefined) t.comm = r.gen.comm;
    if (t.pid !== undefined && this.isOwn(t.pid)) {
      t.own = true;
      this.onTransaction(t);
      return;
    }
    const counts = new Map<string, number>();
    for (const m of pending) {
      const c = parseNftNotification(m, this.table, this.family);
      if (c === null || !('change' in c)) continue;
      const { what, count } = c.change;
      const key = counts.has(what) || counts.size < MAX_CHANGES ? what : 'other changes';
      counts.set(key, (counts.get(key) ?? 0) + count);
    }
    // Messages beyond the cap are not read: they may have touched the table.
    if (unread > 0) counts.set('notifications not read (too many in one transaction)', unread);
    if (counts.size === 0) return;
    t.changes = [...counts].map(([what, n]) => (n === 1 ? what : `${what} (${n})`));
    this.onTransaction(t);
  }

  /** Forgets a partial transaction (its messages were lost with an overflow). */
  reset(): void {
    this.pending = [];
    this.unread = 0;
  }
}

export interface NftMonitorStats {
  /** Transactions reported: this process's own, and others' that touched the table. */
  transactions: number;
  /** Receive-buffer overflows (ENOBUFS): notifications were lost. */
  overflows: number;
  malformed: number;
}

/**
 * Where the notifications come from: the kernel's netlink socket
 * (openNftNotifications, in nft-notify-socket.ts) or, in tests, recorded
 * datagrams. `watch`: each datagram as the event loop reads it, or an
 * error (code ENOBUFS: the receive buffer overflowed, notifications were
 * lost). `recv`: one queued datagram now, null when none is queued; throws
 * as the socket does (ENOBUFS the same).
 */
export interface NotificationSource {
  watch(cb: (err: (Error & { code?: string }) | null, data: Buffer | null) => void): void;
  recv(): Buffer | null;
  close(): void;
}

/**
 * A subscription to the kernel's nf_tables change notifications
 * (NFNLGRP_NFTABLES: every committed change to any table of this network
 * namespace), reporting the transactions that touched one table. Lost
 * notifications (a full receive buffer: a large apply sends one per set
 * element) and malformed ones are reported through `onLost`: the caller
 * cannot know what changed, and must look at the table itself.
 */
export class NftMonitor {
  readonly stats: NftMonitorStats = { transactions: 0, overflows: 0, malformed: 0 };
  private source: NotificationSource;
  private grouper: TransactionGrouper;

  /** `source`: the notifications; the socket opened by `open` (nft-notify-socket.ts) in the daemon. */
  constructor(table: string, family: number, onTransaction: (t: NftTransaction) => void, onLost: (why: string) => void, opts: { source: NotificationSource; isOwn?: (pid: number) => boolean }) {
    this.grouper = new TransactionGrouper(
      table,
      family,
      (t) => {
        this.stats.transactions++;
        onTransaction(t);
      },
      opts.isOwn,
    );
    this.onLost = onLost;
    this.source = opts.source;
    this.source.watch((err, data) => {
      if (err) {
        if (err.code === 'ENOBUFS') this.overflowed();
        return;
      }
      if (data) this.take(data);
    });
  }

  private readonly onLost: (why: string) => void;

  private overflowed(): void {
    this.stats.overflows++;
    this.grouper.reset();
    this.onLost('notifications were lost (receive buffer full)');
  }

  private take(data: Buffer): void {
    try {
      for (const m of parseMessages(data)) this.grouper.feed(m);
    } catch (e) {
      if (!(e instanceof MalformedNetlink)) throw e;
      this.stats.malformed++;
      this.grouper.reset();
      this.onLost('a malformed notification');
    }
  }

  /**
   * Reads, now, every notification the kernel has queued (without waiting
   * for the event loop to deliver them): a check about to judge the table
   * first learns of the transactions committed before it, and so who made
   * a change it finds. At most `max` datagrams.
   */
  drain(max = 1_024): void {
    for (let i = 0; i < max; i++) {
      let data: Buffer | null;
      try {
        data = this.source.recv();
      } catch (err) {
        if ((err as { code?: string }).code === 'ENOBUFS') {
          this.overflowed();
          continue;
        }
        return;
      }
      if (!data) return;
      this.take(data);
    }
  }

  close(): void {
    this.source.close();
  }
}
