/** Resource records for tests of the guard and its cache. */
import { TYPE, type RR } from '../../src/dns/dns-message.js';

export const CNAME = (name: string, target: string, ttl = 300): RR => ({ name, type: TYPE.CNAME, class: 1, ttl, data: { kind: 'name', name: target } });

/** example.com's SOA: `ttl` on the record, `minimum` in it (RFC 2308 takes the smaller for negative answers). */
export const SOA = (ttl: number, minimum: number): RR => ({
  name: 'example.com',
  type: TYPE.SOA,
  class: 1,
  ttl,
  data: { kind: 'soa', mname: 'ns.example.com', rname: 'h.example.com', serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum },
});
