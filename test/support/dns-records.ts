/** Resource records for tests of the guard and its cache. */
import { TYPE, type Message, type RR } from '../../src/dns/dns-message.js';
import { parseAddr } from '../../src/net/ip.js';

export const CNAME = (name: string, target: string, ttl = 300): RR => ({ name, type: TYPE.CNAME, class: 1, ttl, data: { kind: 'name', name: target } });

/** example.com's SOA: `ttl` on the record, `minimum` in it (RFC 2308 takes the smaller for negative answers). */
export const SOA = (ttl: number, minimum: number): RR => ({
  name: 'example.com',
  type: TYPE.SOA,
  class: 1,
  ttl,
  data: { kind: 'soa', mname: 'ns.example.com', rname: 'h.example.com', serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum },
});

/** A query for `name`'s A record (qr false), or its answer (qr true) with `answer`'s address, TTL 60. */
export function aMessage(qr: boolean, id: number, name: string, answer?: string): Message {
  return {
    id,
    flags: { qr, opcode: 0, aa: qr, tc: false, rd: true, ra: qr, ad: false, cd: false, rcode: 0 },
    questions: [{ name, type: TYPE.A, class: 1 }],
    answers: answer ? [{ name, type: TYPE.A, class: 1, ttl: 60, data: { kind: 'a', addr: parseAddr(answer)?.value ?? 0n } }] : [],
    authorities: [],
    additionals: [],
  };
}
