/**
 * What the guard opened, read from the kernel's sets: the rule of an address
 * comes only from a rule's DNS set holding it (never from a name), names from
 * whoever knows them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SetDef } from '../../src/compile/ruleset.js';
import { openedFromKernel } from '../../src/monitor/opened.js';

const set = (name: string, elements: SetDef['elements']): SetDef => ({ name, key: 'ipv4_addr', interval: false, timeout: true, dynamic: true, elements });
const addr = (family: 4 | 6, v: bigint) => ({ t: 'addr' as const, family, start: v, end: v });

describe('unit: openedFromKernel', () => {
  const sets: SetDef[] = [
    set('r_api_d4', [addr(4, 0xc612010an), addr(4, 0xc612010bn)]),
    set('r_cdn_d4', [addr(4, 0xc612010bn)]),
    set('r_api_d6', [addr(6, 0x20010db8000100000000000000000010n)]),
    // Not DNS sets: static addresses of a rule, a builtin, a foreign name.
    set('r_lan_a4', [addr(4, 0xc6120401n)]),
    set('dhcp_servers4', [addr(4, 0xc6120001n)]),
    set('evil', [addr(4, 0xc6120002n)]),
    // An interval in a DNS set (never written by the guard) and a family that does not fit the set.
    set('r_odd_d4', [{ t: 'addr', family: 4, start: 0xc6120300n, end: 0xc61203ffn }, addr(6, 1n)]),
  ];
  const names = (family: 4 | 6, a: bigint) => (family === 4 && a === 0xc612010an ? ['api.sluice.test'] : []);
  const opened = openedFromKernel({ sets }, names);

  it('an address in a rule\'s DNS set names that rule, with the names given for it', () => {
    assert.deepEqual(opened(4, 0xc612010an), { rules: ['api'], names: ['api.sluice.test'] });
    assert.deepEqual(opened(6, 0x20010db8000100000000000000000010n), { rules: ['api'], names: [] });
  });

  it('an address two rules opened names both', () => {
    assert.deepEqual(opened(4, 0xc612010bn)?.rules, ['api', 'cdn']);
  });

  it('static sets, builtins, foreign sets, intervals and mismatched families open nothing', () => {
    for (const a of [0xc6120401n, 0xc6120001n, 0xc6120002n, 0xc6120300n, 0xc6120350n]) assert.equal(opened(4, a), undefined, a.toString(16));
    assert.equal(opened(6, 1n), undefined);
    assert.equal(opened(6, 0xc612010an), undefined, 'the family is part of the address');
  });

  it('no table: nothing opened', () => {
    assert.equal(openedFromKernel(null, names)(4, 0xc612010an), undefined);
  });
});
