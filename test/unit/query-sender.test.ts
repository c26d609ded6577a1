/** Which socket sent a DNS query, when several share its source port (SO_REUSEADDR needs no privilege for UDP). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { senderSocket } from '../../src/dns/query-attribution.js';
import type { SockEntry } from '../../src/monitor/sock-diag.js';

const sock = (src: bigint, uid: number, inode: number): SockEntry => ({ family: 4, sockFamily: 4, proto: 17, state: 7, src, sport: 5355, dst: 0n, dport: 0, ifindex: 0, uid, inode });
const LO = 0x7f000001n;

describe('unit: the socket a query came from', () => {
  it('only the sender\'s own socket, by uid; none when it cannot be told', () => {
    const daemon = sock(0n, 0, 1);
    const user = sock(0n, 65534, 2);
    assert.equal(senderSocket([daemon, user], LO, 65534), user, 'the user asked: the user');
    assert.equal(senderSocket([daemon, user], LO, 0), daemon, 'root asked: root');
    assert.equal(senderSocket([daemon], LO, 65534), undefined, "a user's query is never the daemon's, even when the user's socket is gone");
    assert.equal(senderSocket([daemon, user], LO, undefined), undefined, 'no uid and two owners: unknown');
    assert.equal(senderSocket([sock(0n, 65534, 3), user], LO, 65534), undefined, 'two sockets of one user: unknown');
    assert.equal(senderSocket([sock(LO, 65534, 4), user], LO, 65534)?.inode, 4, 'bound to the source itself wins over the wildcard');
    assert.equal(senderSocket([sock(0x7f000002n, 0, 5)], LO, 0), undefined, 'bound to another address: not it');
  });
});
