import { constants } from 'node:os';
import { NetlinkError, SystemError } from '../errors.js';
import { native } from '../native/native.js';
import { attrMap, attrStr, parseMessages, type NlMsg } from './nl-attr.js';
import {
  NETLINK_CAP_ACK,
  NETLINK_EXT_ACK,
  NLM_F_ACK_TLVS,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSGERR_ATTR_MSG,
  SO_RCVBUFFORCE,
  SO_SNDBUFFORCE,
  SOL_NETLINK,
  SOL_SOCKET,
} from './nl-constants.js';

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([k, v]) => [v, k]));

/** Name of a positive errno value (`ENOENT`). */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}

const NLM_F_DUMP_INTR = 0x10;
const RECV_SIZE = 1 << 20;

/** Thrown when a dump saw the ruleset change under it; callers retry. */
export class DumpInterrupted extends Error {}

/** A netlink socket to the kernel, synchronous: requests are tiny and the kernel answers them in the send call. */
export class NetlinkSocket {
  readonly fd: number;
  private closed = false;
  /** The send buffer asked for (SO_SNDBUFFORCE; the kernel doubles it), or 0 when it could not be set. */
  private sndbuf = 0;

  private constructor(fd: number) {
    this.fd = fd;
  }

  /** Opens a socket of the given netlink protocol. Needs CAP_NET_ADMIN for nf_tables writes. */
  static open(protocol: number, opts: { bufBytes?: number } = {}): NetlinkSocket {
    const n = native();
    let fd: number;
    try {
      fd = n.nlOpen(protocol);
    } catch (err) {
      throw new SystemError('ENETLINKOPEN', `Cannot open netlink socket: ${(err as Error).message}`, { cause: err });
    }
    const sock = new NetlinkSocket(fd);
    try {
      n.setIntOpt(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
      n.setIntOpt(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);
    } catch {
      // Older kernels: plain error codes without text. Not fatal.
    }
    const bytes = opts.bufBytes ?? 8 << 20;
    try {
      n.setIntOpt(fd, SOL_SOCKET, SO_SNDBUFFORCE, bytes);
      sock.sndbuf = bytes;
      n.setIntOpt(fd, SOL_SOCKET, SO_RCVBUFFORCE, bytes);
    } catch {
      // Without CAP_NET_ADMIN the FORCE variants fail; the defaults still serve reads.
    }
    return sock;
  }

  send(buf: Buffer): void {
    // An nfnetlink batch is one datagram, and netlink refuses one larger than the send buffer
    // (EMSGSIZE): a set of a million IPv6 addresses is ~30 MB. Grown to fit, as nft does
    // (mnl_set_sndbuffer); the kernel doubles what is asked, so this leaves room for its overhead.
    if (this.sndbuf > 0 && buf.length > this.sndbuf) {
      try {
        native().setIntOpt(this.fd, SOL_SOCKET, SO_SNDBUFFORCE, buf.length);
        this.sndbuf = buf.length;
      } catch {
        // Not allowed: the send says what the kernel thinks.
      }
    }
    const n = native().nlSend(this.fd, buf);
    if (n !== buf.length) throw new SystemError('ENETLINKSEND', `Short netlink send: ${n} of ${buf.length} bytes`);
  }

  /** One datagram, or null when nothing is queued and block is false. */
  recv(block: boolean): Buffer | null {
    return native().nlRecv(this.fd, RECV_SIZE, block);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    native().closeFd(this.fd);
  }

  /**
   * Sends a batch whose messages all carry NLM_F_ACK and waits until every
   * sequence number has been answered. Throws for the first error, naming the
   * message through `describe`. The kernel runs an nfnetlink batch inside the
   * send call, so the answers are queued when send returns; the bounded
   * wait only covers the unexpected.
   */
  transact(batch: Buffer, expected: Set<number>, describe: (seq: number) => string): void {
    this.send(batch);
    const pending = new Set(expected);
    let failure: NetlinkError | undefined;
    const deadline = Date.now() + 10_000;
    while (pending.size > 0) {
      const data = this.recv(false);
      if (!data) {
        if (Date.now() > deadline) {
          throw new SystemError('ENETLINKTIMEOUT', `No kernel answer for ${pending.size} netlink messages`);
        }
        sleepMs(1);
        continue;
      }
      for (const msg of parseMessages(data)) {
        if (msg.type !== NLMSG_ERROR) continue;
        pending.delete(msg.seq);
        const err = decodeError(msg);
        if (err && !failure) {
          failure = new NetlinkError(err.errno, `Kernel refused ${describe(msg.seq)}: ${errnoName(err.errno)} (${errnoText(err.errno)})`, err.text);
        }
      }
    }
    if (failure) throw failure;
  }

  /** Sends a dump request and collects every reply message until NLMSG_DONE. */
  dump(request: Buffer): NlMsg[] {
    this.send(request);
    const out: NlMsg[] = [];
    for (;;) {
      const data = this.recv(true);
      if (!data) continue;
      for (const msg of parseMessages(data)) {
        if (msg.flags & NLM_F_DUMP_INTR) throw new DumpInterrupted('ruleset changed during dump');
        if (msg.type === NLMSG_DONE) return out;
        if (msg.type === NLMSG_ERROR) {
          const err = decodeError(msg);
          if (!err) continue;
          throw new NetlinkError(err.errno, `Kernel refused a dump: ${errnoName(err.errno)} (${errnoText(err.errno)})`, err.text);
        }
        out.push(msg);
      }
    }
  }

  /** Sends one request with NLM_F_ACK and returns its non-error replies (e.g. GETGEN). */
  request(req: Buffer): NlMsg[] {
    this.send(req);
    const out: NlMsg[] = [];
    for (;;) {
      const data = this.recv(true);
      if (!data) continue;
      for (const msg of parseMessages(data)) {
        if (msg.type === NLMSG_ERROR) {
          const err = decodeError(msg);
          if (err) throw new NetlinkError(err.errno, `Kernel refused a request: ${errnoName(err.errno)} (${errnoText(err.errno)})`, err.text);
          return out;
        }
        out.push(msg);
      }
    }
  }
}

/** Decodes an NLMSG_ERROR payload: null for an ack (error 0). */
export function decodeError(msg: NlMsg): { errno: number; text?: string } | null {
  if (msg.payload.length < 4) return { errno: 5 };
  const code = msg.payload.readInt32LE(0);
  if (code === 0) return null;
  const errno = -code;
  let text: string | undefined;
  if (msg.flags & NLM_F_ACK_TLVS && msg.payload.length >= 20) {
    // With NETLINK_CAP_ACK the echoed request is only its 16-byte header.
    const origLen = msg.payload.readUInt32LE(4);
    const tlvStart = 4 + (msg.flags & 0x100 ? 16 : origLen);
    if (tlvStart <= msg.payload.length) {
      try {
        text = attrStr(attrMap(msg.payload, tlvStart).get(NLMSGERR_ATTR_MSG));
      } catch {
        text = undefined;
      }
    }
  }
  return text ? { errno, text } : { errno };
}

function errnoText(errno: number): string {
  switch (errno) {
    case 1:
      return 'operation not permitted: run as root (CAP_NET_ADMIN)';
    case 2:
      return 'no such object';
    case 17:
      return 'object exists or intervals overlap';
    case 22:
      return 'invalid argument';
    case 23:
      return 'set is full';
    case 95:
      return 'not supported by this kernel';
    case 105:
      return 'no buffer space: the batch is too large for the socket';
    default:
      return 'see errno';
  }
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
/** Synchronous sleep without spinning. */
export function sleepMs(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}
