import { native } from '../native/native.js';
import { NetlinkSocket } from './netlink-socket.js';
import type { NotificationSource } from './nft-monitor.js';
import { NETLINK_ADD_MEMBERSHIP, NETLINK_NETFILTER, NFNLGRP_NFTABLES, SOL_NETLINK } from './nl-constants.js';

/**
 * The kernel's nf_tables change notifications (NFNLGRP_NFTABLES) for
 * NftMonitor: a netfilter netlink socket of this network namespace joined
 * to the group, read by the event loop (native watch) and, for a drain, at
 * once. Kept apart from NftMonitor so that the unit tier drives the monitor
 * with recorded datagrams (test/fixtures/nft-notifications.json); the
 * socket itself is the integration tier's (tamper.test.ts,
 * integrity-watch.test.ts).
 */
export function openNftNotifications(opts: { bufBytes?: number } = {}): NotificationSource {
  const sock = NetlinkSocket.open(NETLINK_NETFILTER, { bufBytes: opts.bufBytes ?? 8 << 20 });
  try {
    native().setIntOpt(sock.fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES);
  } catch (err) {
    sock.close();
    throw err;
  }
  let handle: unknown;
  return {
    watch(cb) {
      handle = native().watch(sock.fd, cb);
    },
    recv: () => sock.recv(false),
    close() {
      if (handle) native().unwatch(handle);
      handle = undefined;
      sock.close();
    },
  };
}
