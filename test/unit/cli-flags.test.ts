/**
 * The command line keeps its word: each command takes the options it declares
 * and no other (a flag meant for another command is a usage error, exit 2, not
 * a silent success), numeric options are whole numbers in range, and the help
 * lists exactly what the parser accepts.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { UsageError } from '../../src/errors.js';
import { COMMANDS, GLOBAL_OPTIONS, POLICY_OPTION, optionsOf, parseCommandLine, parseIntOption, usage } from '../../src/cli/spec.js';
import { ROOT } from '../support/fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const POLICY = join(dir, 'p.yaml');
writeFileSync(POLICY, 'mode: enforce\nessentials: false\nrules:\n  - name: api\n    to: [198.18.0.1]\n    ports: [443/tcp]\n');

/** `sluice ARGS` in a child, with its own empty state directory (nothing here reaches the kernel). */
function sluice(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin/sluice'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, SLUICE_STATE_DIR: mkdtempSync(join(dir, 'state-')), SLUICE_POLICY: POLICY },
    timeout: 20_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function usageError(argv: string[]): string {
  try {
    parseCommandLine(argv);
  } catch (err) {
    assert.ok(err instanceof UsageError, `expected a UsageError for ${argv.join(' ')}, got ${String(err)}`);
    return err.message;
  }
  assert.fail(`accepted: sluice ${argv.join(' ')}`);
}

const visible = COMMANDS.filter((c) => c.section !== 'hidden');
const allOptions = new Map(COMMANDS.flatMap((c) => optionsOf(c)).map((o) => [o.name, o]));
const sample = (o: { value?: string; int?: { min: number } }) => (o.int ? String(o.int.min) : o.value !== undefined ? 'x' : undefined);

describe('unit: CLI flags are per command', () => {
  it('a flag of another command is a usage error naming the flag and the command, for every command and flag', () => {
    let checked = 0;
    for (const c of COMMANDS) {
      const mine = new Set(optionsOf(c).map((o) => o.name));
      for (const o of allOptions.values()) {
        if (mine.has(o.name)) continue;
        const v = sample(o);
        const msg = usageError([c.name, `--${o.name}`, ...(v !== undefined ? [v] : [])]);
        assert.ok(msg.includes(`--${o.name}`) && msg.includes(`sluice ${c.name}`), `message names flag and command: ${msg}`);
        checked++;
      }
    }
    assert.ok(checked > 50, `checked ${checked} command/flag pairs`);
  });

  it('every declared flag is accepted by its command, wherever it stands', () => {
    for (const c of COMMANDS) {
      for (const o of optionsOf(c)) {
        if (o.name === 'help' || o.name === 'version') continue;
        const v = sample(o);
        const flag = [`--${o.name}`, ...(v !== undefined ? [v] : [])];
        for (const argv of [[c.name, ...flag], [...flag, c.name]]) {
          const r = parseCommandLine(argv);
          assert.equal(r.name, c.name);
          assert.notEqual(r.values[o.name], undefined, `${argv.join(' ')}: ${o.name} parsed`);
          assert.deepEqual(r.args, []);
        }
      }
    }
    assert.equal(parseCommandLine(['log', '-f']).values.follow, true);
    assert.equal(parseCommandLine(['dns', '-f', '--limit', '7']).values.limit, 7, 'integers arrive as numbers');
  });

  it('an option name means one thing in every command (the first pass, which finds the command, relies on it)', () => {
    const seen = new Map<string, string>();
    for (const c of COMMANDS) {
      for (const o of optionsOf(c)) {
        const kind = `${o.value !== undefined ? 'value' : 'flag'} -${o.short ?? ''}`;
        assert.equal(seen.get(o.name) ?? kind, kind, `--${o.name} in ${c.name}`);
        seen.set(o.name, kind);
      }
    }
  });

  it('unknown flags and flags before the command are judged against the command', () => {
    assert.match(usageError(['--follow', 'status']), /--follow.*sluice status|sluice status.*--follow/);
    assert.match(usageError(['check', '--bogus']), /Unknown option for `sluice check`: --bogus/);
    assert.match(usageError(['log', '-x']), /Unknown option for `sluice log`: -x/);
    assert.match(usageError(['nope']), /Unknown command: "nope"/);
  });

  it('arguments are counted per command; POLICY and --policy are one policy, not two', () => {
    assert.match(usageError(['status', 'extra']), /`sluice status` takes no arguments: "extra"/);
    assert.match(usageError(['check', 'a.yaml', 'b.yaml']), /at most 1 argument/);
    assert.deepEqual(parseCommandLine(['check', '--policy', 'a.yaml']).values.policy, 'a.yaml');
    assert.deepEqual(parseCommandLine(['explain', '198.18.0.1', '443/tcp', 'p.yaml']).args, ['198.18.0.1', '443/tcp', 'p.yaml']);
  });

  it('the binary refuses a foreign flag with exit 2 and runs nothing', () => {
    const ok = sluice(['check', POLICY]);
    assert.equal(ok.code, 0, `positive control: the policy checks (${ok.stderr})`);
    for (const argv of [
      ['check', POLICY, '--confirm', '5'],
      ['check', '--follow'],
      ['log', '--interval', '2'],
      ['log', '--full'],
      ['dns', '--since', '1h'],
    ]) {
      const r = sluice(argv);
      assert.equal(r.code, 2, `sluice ${argv.join(' ')} exits 2 (got ${r.code}: ${r.stdout}${r.stderr})`);
      assert.match(r.stderr, new RegExp(`${argv[0]}.*${argv.find((a) => a.startsWith('--'))}|${argv.find((a) => a.startsWith('--'))}.*${argv[0]}`), r.stderr);
      assert.doesNotMatch(r.stdout, /OK:/, 'the command did not run');
    }
  });
});

describe('unit: CLI numeric options', () => {
  const bad = ['abc', '', '-1', '1.5', '0', ' 5', '5 ', '0x10', '1e3', '+5', '١', 'Infinity', '99999999999999999999'];

  it('one parser: whole numbers in range, and nothing else', () => {
    const r = { min: 1, max: 100 };
    assert.equal(parseIntOption('--n', '1', r), 1);
    assert.equal(parseIntOption('--n', '100', r), 100);
    assert.equal(parseIntOption('--n', '007', r), 7);
    for (const text of [...bad, '101']) {
      assert.throws(() => parseIntOption('--n', text, r), (e: unknown) => e instanceof UsageError && e.message.includes('--n') && e.message.includes(JSON.stringify(text)), JSON.stringify(text));
    }
  });

  it('every count, limit, interval and confirm option is declared as an integer with a range', () => {
    for (const c of COMMANDS) {
      for (const o of c.options) {
        if (['limit', 'interval', 'confirm'].includes(o.name)) assert.ok(o.int && o.int.min >= 1, `${c.name} --${o.name} is an integer option from 1`);
      }
    }
  });

  it('each command refuses a bad number before it runs, with exit 2 and the flag named', () => {
    const cases = COMMANDS.flatMap((c) => c.options.filter((o) => o.int).map((o) => ({ c: c.name, o: o.name, min: o.int?.min ?? 0, max: o.int?.max ?? 0 })));
    assert.deepEqual(cases.map((x) => `${x.c} --${x.o}`).sort(), ['apply --confirm', 'dns --limit', 'explain --icmp-type', 'explain --sport', 'log --limit', 'stats --limit', 'suggest --stable-days', 'top --interval']);
    for (const { c, o, min, max } of cases) {
      for (const text of ['abc', '-1', '1.5', ...(min > 0 ? [String(min - 1)] : []), '0x10', String(max + 1)]) {
        const msg = usageError([c, `--${o}=${text}`]);
        assert.ok(msg.includes(`--${o}`) && msg.includes(JSON.stringify(text)), msg);
        if (text !== '-1') assert.equal(usageError([c, `--${o}`, text]), msg, 'the same with the value as its own argument');
      }
      assert.match(usageError([c, `--${o}`, '-1']), new RegExp(`Bad --${o} value: "-1"`), 'a negative number is a bad value, not a missing one');
    }
  });

  it('the binary: dns --limit abc is exit 2, not a silent default of 100', () => {
    for (const argv of [['dns', '--limit', 'abc'], ['log', '--limit', '0x10'], ['log', '--limit', '1e3'], ['apply', POLICY, '--confirm', '0']]) {
      const r = sluice(argv);
      assert.equal(r.code, 2, `sluice ${argv.join(' ')}: ${r.code} ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, new RegExp(`Bad ${argv.find((a) => a.startsWith('--'))} value`));
    }
  });
});

describe('unit: CLI help and parser agree', () => {
  it('explain --user takes what a policy takes: a uid in range or a user that exists; anything else is exit 2', () => {
    for (const bad of ['99999999999', '4294967295', 'bad name!', 'no-such-user-here']) {
      const r = sluice(['explain', '198.18.0.1', '443', '--user', bad]);
      assert.equal(r.code, 2, `--user ${bad}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /--user|No such user/);
    }
    for (const good of ['0', '4294967294', 'root']) {
      const r = sluice(['explain', '198.18.0.1', '443', '--user', good, '--json']);
      assert.equal(r.code, 0, `--user ${good}: ${r.stderr}`);
      assert.equal((JSON.parse(r.stdout) as { query: { uid: number } }).query.uid, good === 'root' ? 0 : Number(good));
    }
  });

  it('explain --sport and --icmp-type go with their protocol, and reach the built-ins (essentials, DHCP)', () => {
    for (const argv of [['198.18.0.1', 'icmpv6', '--sport', '68'], ['198.18.0.1', '--sport', '68'], ['198.18.0.1', '67/udp', '--icmp-type', '135'], ['198.18.0.1', '--icmp-type', '300']]) {
      const r = sluice(['explain', ...argv]);
      assert.equal(r.code, 2, `explain ${argv.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /--sport|--icmp-type/);
    }
    const withEssentials = join(dir, 'essentials.yaml');
    writeFileSync(withEssentials, 'mode: enforce\nrules:\n  - name: api\n    to: [198.18.0.1]\n    ports: [443/tcp]\n');
    const nd = sluice(['explain', 'ff02::2', 'icmpv6', '--icmp-type', '135', withEssentials, '--json']);
    assert.equal(nd.code, 0, nd.stderr);
    const ndJson = JSON.parse(nd.stdout) as { verdict: string; decidedBy: { kind: string }; query: { icmpType: number } };
    assert.deepEqual([ndJson.verdict, ndJson.decidedBy.kind, ndJson.query.icmpType], ['allow', 'essentials', 135]);
    const dhcp = sluice(['explain', '255.255.255.255', '67/udp', '--sport', '68', '--user', 'root', withEssentials]);
    assert.equal(dhcp.code, 0, dhcp.stderr);
    assert.match(dhcp.stdout, /^255\.255\.255\.255 67\/udp: ALLOW\n {2}allowed as essentials/);
    const other = sluice(['explain', '255.255.255.255', '67/udp', '--sport', '40000', '--user', 'root', withEssentials]);
    assert.match(other.stdout, /: BLOCK\n {2}blocked by the default deny/);
  });

  it('every declared flag appears in the help, on its command', () => {
    const help = usage();
    for (const c of COMMANDS.filter((x) => x.section !== 'hidden')) {
      const entry = help.split('\n').find((l) => l.startsWith(`  ${c.name} `));
      assert.ok(entry, `${c.name} is in the help`);
      for (const o of c.options) assert.ok(entry.includes(`--${o.name}`), `${c.name}: --${o.name} in its help line: ${entry}`);
    }
    for (const o of [...GLOBAL_OPTIONS, POLICY_OPTION]) assert.ok(help.includes(`--${o.name}`), `--${o.name} in the help`);
  });

  it('every flag the help mentions is one the parser accepts for that command', () => {
    let current: string | undefined;
    for (const line of usage().split('\n')) {
      const m = /^ {2}([a-z_]+) /.exec(line);
      if (m) current = m[1];
      if (!/^ {2}[a-z]/.test(line)) continue;
      const c = visible.find((x) => x.name === current);
      assert.ok(c, `help line for a known command: ${line}`);
      const accepted = optionsOf(c).map((o) => o.name);
      // The synopsis: the whole line when it reaches the description column, else what stands before it.
      const head = line.slice(0, 38).trimEnd().length < 38 ? line.slice(0, 38) : line;
      for (const f of head.matchAll(/--([a-z0-9-]+)/g)) assert.ok(accepted.includes(f[1] ?? ''), `${c.name} accepts --${f[1]} as its help says`);
    }
  });
});
