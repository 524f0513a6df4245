/**
 * Issue 14: one apply loads, archives and repairs both families, and a failure in either
 * leaves both as they were. A gateway namespace per backend, the real CLI, real
 * iptables-restore/ip6tables-restore or nft, real conntrack entries.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { archiveBody, parseArchiveHeader, sha256 } from '../../src/archive/header.js';
import { fingerprint6, translations6 } from '../../src/render/fingerprint6.js';
import { isRoot } from '../helpers/netns.js';
import { ALPHA, BETA, GAMMA } from '../helpers/profiles.js';
import { applyRuleset } from '../../src/apply/apply.js';
import { kernelRules6 } from '../../src/apply/status.js';
import { discover } from '../../src/cli/discovery.js';
import { loadConfig } from '../../src/config-file.js';
import type { CommandRunner } from '../../src/netfilter/runner.js';
import { systemClock } from '../../src/system/clock.js';
import { isProcessAlive } from '../../src/system/process-alive.js';
import { netnsRunner } from '../helpers/netns-runner.js';
import { createFaultSite, type FaultSite } from './site.js';
import { applyAndKill, waitFor, writeSlowWrapper } from './slow-load.js';

const NAT6 = { publicAddresses: ['2001:db8::1'] };
/** ALPHA's twins are fd0a:2a::2 ... fd0a:2a::fe; BETA's processes share fd0a:2a:1::/64. */
const ALPHA_CLIENTS6 = 253;
const BETA_CLIENTS6 = 250;

// Network namespaces, ip6tables, nft and conntrack need root; CI runs as root.
const describeKernel = isRoot() ? describe : describe.skip;

describeKernel.each(['iptables', 'nftables'] as const)('IPv6 in the apply (%s)', (backend) => {
  let site: FaultSite;

  const applyJson = (env: Record<string, string> = {}) => {
    const result = site.cli(['apply', '--json'], env);
    expect({ status: result.status, stderr: result.stderr }).toEqual({ status: 0, stderr: '' });
    return JSON.parse(result.stdout) as Record<string, unknown> & {
      ipv6?: Record<string, unknown>;
    };
  };
  /** One family's NAT state in the kernel, with counters: equal before and after, no write. */
  const kernelState = (family: 'ip' | 'ip6'): string =>
    backend === 'iptables'
      ? site.net
          .exec(site.net.gateway, [`${family}tables-save`, '-c', '-t', 'nat'])
          .replace(/^#.*\n/gm, '')
      : site.net.exec(site.net.gateway, ['nft', '-a', 'list', 'table', family, 'traceable_nat']);
  const kernel4 = () => kernelState('ip');
  const kernel6 = () => kernelState('ip6');
  const read = (name: string): Buffer => readFileSync(join(site.sandbox.archiveDir, name));
  const text = (name: string): string => {
    const bytes = read(name);
    return (name.endsWith('.gz') ? gunzipSync(bytes) : bytes).toString('utf8');
  };
  const rulesFile6 = () => join(site.sandbox.dir, 'rules.v6');
  const files = () =>
    [site.sandbox.rulesFile, rulesFile6()].map((path) =>
      existsSync(path) ? readFileSync(path, 'utf8') : undefined,
    );

  /** What an apply may change: both families in the kernel, the rules files, the archive. */
  const everything = () => ({
    four: kernel4(),
    six: kernel6(),
    files: files(),
    archives: site.archives(),
  });

  beforeAll(() => {
    site = createFaultSite(backend, {}, {}, NAT6);
    site.sandbox.writeProfiles([ALPHA, BETA]);
  });
  afterAll(() => {
    (site as FaultSite | undefined)?.destroy();
  });

  test('one apply loads and archives both families; the next changes nothing', () => {
    const first = applyJson();
    expect(first.outcome).toBe('applied');
    expect(first.ipv6).toMatchObject({ mode: 'ports', clients: ALPHA_CLIENTS6 + BETA_CLIENTS6 });
    const [archive] = site.archives();
    const activation = text(archive ?? '');
    if (backend === 'iptables') {
      // rules.v6.<the same seconds>, vouched for by the rules.v4 header, equal to rules.v6.
      const half = (archive ?? '').replace('rules.v4', 'rules.v6');
      expect(parseArchiveHeader(activation)?.ipv6).toEqual({ sha256: sha256(read(half)) });
      expect(archiveBody(text(half))).toBe(readFileSync(rulesFile6(), 'utf8'));
      expect(parseArchiveHeader(text(half))?.family).toBe('ipv6');
      expect(translations6(kernel6())).toEqual(translations6(readFileSync(rulesFile6(), 'utf8')));
    } else {
      // One file, one archive, both tables.
      expect(archiveBody(activation)).toBe(readFileSync(site.sandbox.rulesFile, 'utf8'));
      const table6 = activation.slice(activation.indexOf('table ip6'));
      expect(fingerprint6(kernel6())).toBe(fingerprint6(table6));
    }
    expect(translations6(kernel6()).size).toBe(ALPHA_CLIENTS6 + BETA_CLIENTS6);

    const before = everything();
    expect(applyJson().outcome).toBe('unchanged');
    expect(everything()).toEqual(before);
  });

  test('IPv6 drift alone is repaired, without a new archive', () => {
    const archives = site.archives();
    const held = translations6(kernel6());
    const fingerprint = fingerprint6(kernel6());
    if (backend === 'iptables') {
      const leaf = /^:(TNAT-\S+\/124) /m.exec(kernel6())?.[1] ?? '';
      site.net.exec(site.net.gateway, ['ip6tables', '-t', 'nat', '-F', leaf]);
    } else {
      site.net.exec(site.net.gateway, [
        'nft',
        'delete element ip6 traceable_nat leaves { fd0a:2a::/124 }',
      ]);
    }
    // iptables: a leaf chain emptied; nftables: a /124 no longer looked up.
    if (backend === 'iptables') expect(translations6(kernel6())).not.toEqual(held);
    else expect(fingerprint6(kernel6())).not.toBe(fingerprint);
    const drifted = site.cli(['status']);
    expect(drifted.status).toBe(1);
    expect(drifted.stdout).toMatch(/^IPv6 kernel .*\(DIFFERS from the archive\)$/m);
    expect(applyJson().outcome).toBe('repaired');
    const repaired = site.cli(['status']);
    expect(repaired.stdout).toMatch(
      /^IPv6 kernel .*: 503 clients to 2001:db8::1 \(same as the archive\)$/m,
    );
    expect(repaired.status).toBe(0);
    expect(translations6(kernel6())).toEqual(held);
    expect(fingerprint6(kernel6())).toBe(fingerprint);
    expect(site.archives()).toEqual(archives);
  });

  // nftables keeps both families in one rules file: there is no rules.v6 to lose alone.
  if (backend === 'iptables')
    test('rules.v6 emptied alone is written again and reported as a file update, nothing else touched', () => {
      const before = everything();
      writeFileSync(rulesFile6(), '');
      const result = site.cli(['apply']);
      expect({ status: result.status, stderr: result.stderr }).toEqual({ status: 0, stderr: '' });
      expect(result.stdout).toMatch(
        new RegExp(`^file updated: ${rulesFile6().replace(/[.]/g, '\\.')} rewritten;`, 'm'),
      );
      expect(everything()).toEqual(before);
    });

  test('a refused IPv6 load leaves both families, the files and the archive as they were', () => {
    // The IPv6 load (never its --test / -c check) fails, after the IPv4 one went through.
    const bin = join(site.sandbox.dir, 'refusing-bin');
    mkdirSync(bin, { recursive: true });
    const [tool, check] = backend === 'iptables' ? ['ip6tables-restore', '--test'] : ['nft', '-c'];
    writeFileSync(
      join(bin, tool),
      `#!/bin/sh\ncase " $* " in *" ${check} "*) exec /usr/sbin/${tool} "$@";; esac\n` +
        (backend === 'nftables'
          ? `case " $* " in *" -f "*) ;; *) exec /usr/sbin/nft "$@";; esac\n`
          : '') +
        `cat >/dev/null\necho "${tool}: line 2 failed" >&2\nexit 1\n`,
    );
    chmodSync(join(bin, tool), 0o755);
    site.sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
    const before = everything();

    const refused = site.cli(['apply'], { PATH: `${bin}:${process.env.PATH ?? ''}` });
    expect(refused.status).toBe(4);
    expect(refused.stderr).toMatch(/^traceable-nat: .*refused.*\n(?:.*\n)*$/);
    expect(refused.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(everything()).toEqual(before);
    expect(site.leftovers()).toEqual([]);

    // With the cause gone, the same change goes through.
    const applied = applyJson();
    expect(applied.outcome).toBe('applied');
    expect(translations6(kernel6()).size).toBe(ALPHA_CLIENTS6 + BETA_CLIENTS6 + 253);
  });

  test('switching IPv6 to prefix mode deletes the translated IPv6 entries of the clients only', () => {
    const insert = (source: string, sport: number, translated: boolean): void => {
      const args = ['conntrack', '-I', '-p', 'tcp', '-s', source];
      args.push('-d', '2001:db8:ffff::80', '--sport', String(sport), '--dport', '443');
      args.push('--state', 'ESTABLISHED', '--timeout', '600');
      if (translated) args.push('--src-nat', '2001:db8::1');
      site.net.exec(site.net.gateway, args);
    };
    const entries = (): string[] =>
      site.net
        .exec(site.net.gateway, ['conntrack', '-L', '-f', 'ipv6', '-p', 'tcp'])
        .split('\n')
        .filter((line) => line.includes('dport=443'))
        .map((line) => {
          const [, source, back] = /src=(\S+) .*? src=\S+ dst=(\S+)/.exec(line) ?? [];
          return `${source ?? '?'}${back === source ? '' : '+nat'}`;
        })
        .sort();
    const clients = ['fd0a:2a::2', 'fd0a:2a::fe', 'fd0a:2a:1::2'];
    const strangers = ['fd0a:2a::1', 'fd0a:2a::ff', 'fd0a:2a::1:2', '2001:db8:77::7'];
    let sport = 30000;
    for (const client of clients) insert(client, sport++, true);
    insert('fd0a:2a::3', sport++, false); // a client's own traffic to the server
    for (const stranger of strangers) {
      insert(stranger, sport++, true);
      insert(stranger, sport++, false);
    }
    const before = entries();
    expect(before).toHaveLength(clients.length + 1 + 2 * strangers.length);

    site.sandbox.writeConfig({ nat6: { publicPrefix: '2001:db8::/32' } });
    const switched = applyJson();
    expect(switched.outcome).toBe('applied');
    expect(switched.ipv6).toMatchObject({ mode: 'prefix', changedClients: 756 });
    expect(switched.conntrackDeleted).toBe(clients.length);
    const gone = clients.map((client) => `${client}+nat`);
    expect(entries()).toEqual(before.filter((entry) => !gone.includes(entry)));
    expect(kernel6()).toMatch(
      backend === 'iptables'
        ? /-j NETMAP --to 2001:db8::\/32/
        : /snat (ip6 )?prefix to 2001:db8::\/32/,
    );
  });

  test('removing nat6 takes our IPv6 rules out of the kernel and the rules file, and says so in a new archive', () => {
    const archives = site.archives();
    site.sandbox.writeConfig();
    const removed = applyJson();
    expect(removed.outcome).toBe('applied');
    expect(removed.ipv6).toBeUndefined();
    if (backend === 'iptables') {
      expect(kernel6()).not.toMatch(/TNAT/);
      expect(readFileSync(rulesFile6(), 'utf8')).not.toMatch(/TNAT/);
      const newest = site.archives().at(-1) ?? '';
      expect(parseArchiveHeader(text(newest))?.ipv6).toBeUndefined();
    } else {
      expect(() => kernel6()).toThrow(/No such file or directory/);
      expect(readFileSync(site.sandbox.rulesFile, 'utf8')).not.toMatch(/table ip6/);
    }
    expect(site.archives()).toHaveLength(archives.length + 1);
    expect(applyJson().outcome).toBe('unchanged');
  });
});

/** A gateway namespace with ALPHA and nat6 port blocks, made before and removed after the block's tests. */
function alphaSite(backend: 'iptables' | 'nftables'): () => FaultSite {
  let site: FaultSite | undefined;
  beforeAll(() => {
    site = createFaultSite(backend, {}, {}, NAT6);
    site.sandbox.writeProfiles([ALPHA]);
  });
  afterAll(() => {
    site?.destroy();
  });
  return () => {
    if (!site) throw new Error('the site is made in beforeAll');
    return site;
  };
}

describeKernel.each(['iptables', 'nftables'] as const)(
  'kill -9 while only the IPv6 rules change (%s)',
  (backend) => {
    let site: FaultSite;
    const alpha = alphaSite(backend);
    beforeAll(() => {
      site = alpha();
    });

    test('the IPv6 ruleset the orphan loads is archived by the next apply, both halves', async () => {
      expect(site.cli(['apply']).status).toBe(0);
      const [first] = site.archives();
      // Only IPv6 changes: the IPv4 bindings of the pending archive equal the newest one's.
      site.sandbox.writeConfig({ nat6: { publicPrefix: '2001:db8::/32' } });
      const wrappers = join(site.sandbox.dir, 'slow-bin');
      writeSlowWrapper(wrappers, backend, 2, backend === 'iptables' ? 'ip6tables-restore' : 'nft');
      const { childPid } = await applyAndKill(site, wrappers);
      await waitFor('the orphaned load to end', () => !isProcessAlive(childPid));
      expect(site.archives()).toEqual([first]);
      const checked = site.cli(['check']);
      expect(checked.status).not.toBe(0);
      expect(checked.stdout).toMatch(
        /^FAIL {2}archive head: .*\.pending is the archive of an apply that was interrupted/m,
      );

      const next = site.cli(['apply']);
      expect(next.status).toBe(0);
      expect(next.stderr).toMatch(
        /warning: an interrupted apply \(started .*\) had loaded its ruleset/,
      );
      expect(site.leftovers()).toEqual([]);
      const archives = site.archives();
      expect(archives).toHaveLength(2);
      const newest = archives.at(-1) ?? '';
      const dir = site.sandbox.archiveDir;
      const text = (name: string) => gunzipSync(readFileSync(join(dir, name))).toString('utf8');
      if (backend === 'iptables') {
        const half = newest.replace('rules.v4', 'rules.v6');
        expect(parseArchiveHeader(text(newest))?.ipv6).toEqual({
          sha256: sha256(readFileSync(join(dir, half))),
        });
        expect(text(half)).toContain('-j NETMAP --to 2001:db8::/32');
      } else {
        expect(text(newest)).toContain('snat ip6 prefix to 2001:db8::/32');
      }
      expect(site.cli(['check']).status).toBe(0);
    });
  },
);

describeKernel.each(['iptables', 'nftables'] as const)(
  "the daemon's change path, trusting what it applied last (%s)",
  (backend) => {
    let site: FaultSite;
    const alpha = alphaSite(backend);
    beforeAll(() => {
      site = alpha();
    });

    test('a change is loaded for both families without reading the kernel back', async () => {
      const config = loadConfig(site.sandbox.configFile);
      const runner = netnsRunner(site.net.gateway);
      const calls: string[] = [];
      const counting: CommandRunner = {
        run: (command, args, options) => {
          calls.push([command, ...args].join(' '));
          return runner.run(command, args, options);
        },
      };
      const deps = { runner: counting, clock: systemClock, discover };
      const first = await applyRuleset(config, deps);
      expect(first.outcome).toBe('applied');

      site.sandbox.writeProfiles([ALPHA, GAMMA]);
      calls.length = 0;
      const trusted = { plan: first.plan, archive: first.activeArchive };
      const second = await applyRuleset(config, deps, { trusted });
      expect(second.outcome).toBe('applied');
      // Nothing read back: no -save, no list (the trusted plan stands for the kernel).
      expect(calls.filter((call) => / list |-save /.test(call + ' '))).toEqual([]);
      const kernel6 = await kernelRules6(config, runner);
      expect(translations6(kernel6 ?? '')).toEqual(translations6(second.plan.ipv6?.fileText ?? ''));
      expect(translations6(kernel6 ?? '').size).toBe(2 * 253);

      calls.length = 0;
      const again = await applyRuleset(config, deps, {
        trusted: { plan: second.plan, archive: second.activeArchive },
      });
      expect(again.outcome).toBe('unchanged');
      expect(calls).toEqual([]);
    });
  },
);
