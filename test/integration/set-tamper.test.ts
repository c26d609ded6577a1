/**
 * Integration: changes to Sluice's sets that `nft list` prints as Sluice's
 * own, made by root in the client namespace, are seen by `sluice status` (a
 * review of the hash port sets, 2026-12-07, found the first two unseen):
 *   - a port element whose key has bytes outside its fields (tcp . 443 with
 *     bytes 6-7 set): nft shows tcp . 443, and the hash lookup matches no
 *     packet (an allow rule silently denies; the DoH block lets 443 through);
 *   - a catch-all element (`nft add element ... { * }`): the set matches
 *     every key (a rule's ports become every port);
 *   - a concatenated interval port set (flows.replies with a range) rewritten
 *     with field lengths [1, 1]: its lookups compare a port's high byte only.
 * The first two are shown to change what passes, then to be reported; the
 * third is shown reported.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { HOSTS, ROOT, World } from '../world/world.js';

const POLICY = `mode: enforce
rules:
  - name: web
    to: [${HOSTS.api4}]
    ports: [443/tcp]
  - name: lan
    to: [${HOSTS.other4}]
    ports: [8400-8401/tcp]
flows:
  replies: [8400-8401/tcp]
`;

/** Runs as root in the client namespace: rewrites the live table through Sluice's own netlink code. */
const TAMPER = `
const [mode] = process.argv.slice(1);
const { KernelNetfilter } = await import(${JSON.stringify(`${ROOT}dist/src/netfilter/kernel-netfilter.js`)});
const { KEY_INFO } = await import(${JSON.stringify(`${ROOT}dist/src/netfilter/nft-encode.js`)});
const { SET_ELEM, LIST_ELEM, DATA } = await import(${JSON.stringify(`${ROOT}dist/src/netfilter/nl-constants.js`)});
const nf = new KernelNetfilter();
if (mode === 'pad') {
  const def = { name: 'r_web_p', key: 'inet_proto . inet_service', interval: false };
  const b = nf.batch();
  b.elements('delete', 'sluice', def, [{ t: 'protoport', proto: 6, from: 443, to: 443 }]);
  const key = Buffer.from('0600000001bbffff', 'hex');
  b.elementMessages('add', 'sluice', def, 1, () => b.w.nest(LIST_ELEM, () => b.w.nest(SET_ELEM.KEY, () => b.w.bytes(DATA.VALUE, key))));
  nf.commit(b);
} else if (mode === 'fields') {
  const live = nf.read('sluice', { elements: 'all' });
  KEY_INFO['inet_proto . inet_service'].fields = [1, 1];
  nf.replace(live.ruleset, { carryDynamic: false });
}
nf.close();
`;

describe('integration: set tampering that nft prints as Sluice\'s', () => {
  let w: World;
  let file: string;
  before(async () => {
    w = await World.create();
    file = w.policy(POLICY, 'set-tamper.yaml');
  });
  after(async () => {
    await w?.destroy();
  });

  const apply = async () => {
    const r = await w.sluice(['apply', file]);
    assert.equal(r.code, 0, r.stderr);
  };
  const anomalies = async () => (await w.sluiceJson<{ anomalies: string[] }>(['status', '--json'])).json.anomalies;
  const tamper = async (mode: string) => {
    const r = await w.exec([process.execPath, '--input-type=module', '-e', TAMPER, mode]);
    assert.equal(r.code, 0, r.stderr);
  };
  const reach = (target: string) => w.reach([target], { uid: 65534, timeoutMs: 1000 }).then((r) => r[target]);

  it('a port element with bytes outside its fields: the rule stops matching, and status reports it', async () => {
    await apply();
    assert.deepEqual(await anomalies(), []);
    assert.equal(await reach(`tcp:${HOSTS.api4}:443`), true);
    await tamper('pad');
    assert.match(await w.nft(['list', 'set', 'inet', 'sluice', 'r_web_p']), /tcp \. 443/, 'nft prints it as it was');
    assert.equal(await reach(`tcp:${HOSTS.api4}:443`), false, 'the tampered element matches no packet');
    assert.deepEqual(await anomalies(), ['set r_web_p: malformed element']);
  });

  it('a catch-all element: every port passes the rule, and status reports it', async () => {
    await apply();
    assert.equal(await reach(`tcp:${HOSTS.api4}:80`), false);
    const r = await w.exec(['nft', 'add', 'element', 'inet', 'sluice', 'r_web_p', '{ * }']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await reach(`tcp:${HOSTS.api4}:80`), true, 'the catch-all opens every port');
    assert.deepEqual(await anomalies(), ['set r_web_p: a catch-all element (it matches every key)']);
  });

  it('a port range in a set of ports (an rbtree, behind meta l4proto) admits its range and nothing more', async () => {
    await apply();
    assert.match(await w.nft(['list', 'set', 'inet', 'sluice', 'r_lan_pt']), /type inet_service[\s\S]*8400-8401/);
    assert.equal(await reach(`tcp:${HOSTS.other4}:8443`), false);
    assert.deepEqual(await anomalies(), []);
  });

  it('a concatenated interval port set with field lengths [1, 1] is reported by status', async () => {
    await apply();
    await tamper('fields');
    assert.deepEqual(await anomalies(), ['set reply_ports has a field layout Sluice does not write ([1, 1])']);
  });
});
