/**
 * `sluice top`'s blocked and would-block attempts per process: grouped by
 * process (by uid when no process was named), counted by verdict, allowed
 * flows left out, the latest attempt's destination shown.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StoredEvent } from '../../src/events/event-store.js';
import { attemptRows, topScreen } from '../../src/cli/commands/top.js';

let id = 0;
function ev(extra: Partial<StoredEvent>): StoredEvent {
  return { id: ++id, time: 1000, verdict: 'blocked', rule: '#default', family: 4, proto: 6, src: '198.18.0.2', dst: '198.18.2.20', sport: 40000, dport: 443, uid: 0, user: 'root', ...extra };
}

describe('unit: top\'s attempts per process', () => {
  const curl = { pid: 700, comm: 'curl', exe: '/usr/bin/curl' };
  const rows = attemptRows([
    ev({ process: curl, time: 1000 }),
    ev({ process: curl, time: 3000, dst: '198.18.2.21', hostname: 'evil.example', rule: 'api' }),
    ev({ process: curl, time: 2000, verdict: 'would-block' }),
    ev({ process: { pid: 800, comm: 'py' }, uid: 65534, user: 'nobody' }),
    ev({ uid: 65534, user: 'nobody' }),
    ev({ uid: 65534, user: 'nobody', verdict: 'allowed' }),
    ev({ process: { pid: 900, comm: 'ok' }, verdict: 'allowed' }),
  ]);

  it('groups by process, counts each verdict, and leaves allowed flows out', () => {
    assert.deepEqual(
      rows.map((r) => [r.key, r.blocked, r.wouldBlock]),
      [
        ['pid:700', 2, 1],
        ['pid:800', 1, 0],
        ['uid:65534', 1, 0],
      ],
    );
  });

  it('shows the latest attempt, whatever the order the events came in', () => {
    assert.deepEqual(rows[0]?.last, { dst: '198.18.2.21:443', hostname: 'evil.example', rule: 'api', time: 3000 });
    assert.equal(rows[0]?.comm, 'curl');
    assert.equal(rows[2]?.user, 'nobody');
  });

  it('the screen lists them under their own heading', () => {
    const lines = topScreen([], [], 1, 40, rows);
    const head = lines.findIndex((l) => l.startsWith('blocked and would-block attempts'));
    assert.ok(head > 0, lines.join('\n'));
    assert.match(lines[head + 2] ?? '', /^\s+700\s+curl\s+root\s+2\s+1\s+198\.18\.2\.21:443 \(evil\.example\)\s+api$/);
    assert.equal(topScreen([], [], 1, 40, []).some((l) => l.startsWith('blocked and would-block')), false);
  });
});
