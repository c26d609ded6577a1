import { NetlinkSocket } from '../netfilter/netlink-socket.js';
import { attrMap, attrStr, NlWriter } from '../netfilter/nl-attr.js';
import { NLM_F_DUMP, NLM_F_REQUEST } from '../netfilter/nl-constants.js';

const NETLINK_ROUTE = 0;
const RTM_NEWLINK = 16;
const RTM_GETLINK = 18;
const IFLA_IFNAME = 3;
const IFINFOMSG_LEN = 16;

/**
 * Interface names by index, read over rtnetlink in the caller's network
 * namespace. (/sys/class/net would show the namespace /sys was mounted in,
 * which `nsenter --net` does not change.) Refreshed when an unknown index
 * shows up, at most once a second.
 */
export class LinkNames {
  private names = new Map<number, string>();
  private lastRead = 0;

  /** The interface name of an index, or undefined. */
  name(index: number): string | undefined {
    const n = this.names.get(index);
    if (n !== undefined) return n;
    const now = Date.now();
    if (now - this.lastRead < 1000) return undefined;
    this.lastRead = now;
    try {
      this.names = readLinks();
    } catch {
      // No rtnetlink (very unusual): events carry no interface name.
    }
    return this.names.get(index);
  }
}

/** Reads every link's index and name. */
export function readLinks(): Map<number, string> {
  const sock = NetlinkSocket.open(NETLINK_ROUTE, { bufBytes: 1 << 20 });
  try {
    const w = new NlWriter(64);
    w.beginRaw(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 1, Buffer.alloc(IFINFOMSG_LEN));
    w.endMsg();
    const out = new Map<number, string>();
    for (const m of sock.dump(w.finish())) {
      if (m.type !== RTM_NEWLINK || m.payload.length < IFINFOMSG_LEN) continue;
      const index = m.payload.readInt32LE(4);
      try {
        const name = attrStr(attrMap(m.payload, IFINFOMSG_LEN).get(IFLA_IFNAME));
        if (name && index > 0) out.set(index, name.slice(0, 16));
      } catch {
        /* a malformed link message: skip it */
      }
    }
    return out;
  } finally {
    sock.close();
  }
}
