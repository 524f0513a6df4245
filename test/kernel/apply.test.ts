/**
 * The real thing: the CLI applies rules inside a gateway namespace, clients send real TCP and
 * UDP traffic to a server behind it, and the server says which source it saw. Run for both
 * backends. Needs root (CI runs as root).
 */
import {
  readdirSync,
  readFileSync,
  lstatSync,
  symlinkSync,
  writeFileSync,
  mkdirSync,
  existsSync,
  rmSync,
  renameSync,
} from 'node:fs';
import { join } from 'node:path';
import { createTopology, isRoot, sh, type Topology } from '../helpers/netns.js';
import { createSandbox, runCli, type Sandbox } from '../helpers/sandbox.js';
import { startServer, probe, holdConnection, type Probe, type Server } from '../helpers/traffic.js';
import { readArchiveText } from '../helpers/archive-files.js';
import { ALPHA, BETA, GAMMA } from '../helpers/profiles.js';
import { netnsRunner } from '../helpers/netns-runner.js';
import { applyRuleset, type ApplyResult } from '../../src/apply/apply.js';
import { discover } from '../../src/cli/discovery.js';
import { loadConfig } from '../../src/config-file.js';
import { systemClock } from '../../src/system/clock.js';

const CLIENTS = [
  '10.42.0.2',
  '10.42.0.254',
  '10.42.1.2',
  '10.42.1.126',
  '10.42.1.130',
  '10.42.1.254',
  '10.42.2.2',
];

interface Block {
  readonly publicAddress: string;
  readonly firstPort: number;
  readonly lastPort: number;
}

// Kernel tests need root for network namespaces; CI runs as root.
const describeKernel = isRoot() ? describe : describe.skip;

describeKernel.each(['iptables', 'nftables'] as const)('apply on a real kernel (%s)', (backend) => {
  let net: Topology;
  let sandbox: Sandbox;
  let server: Server | undefined;

  const apply = (...args: string[]) =>
    runCli(net.gateway, ['apply', '--config', sandbox.configFile, ...args]);
  const applyJson = (...args: string[]): Record<string, unknown> => {
    const result = apply('--json', ...args);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    return JSON.parse(result.stdout) as Record<string, unknown>;
  };
  const lookup = (client: string): Block | undefined => {
    const result = runCli(undefined, ['lookup', client, '--json', '--config', sandbox.configFile]);
    const parsed = JSON.parse(result.stdout) as Block & { found: boolean };
    return parsed.found ? parsed : undefined;
  };
  const kernelState = (): string =>
    backend === 'iptables'
      ? net.exec(net.gateway, ['iptables-save', '-c', '-t', 'nat']).replace(/^#.*\n/gm, '')
      : net.exec(net.gateway, ['nft', '-a', 'list', 'table', 'ip', 'traceable_nat']);
  const statusJson = () => {
    const run = runCli(net.gateway, ['status', '--json', '--config', sandbox.configFile]);
    const parsed = JSON.parse(run.stdout) as {
      agree: boolean;
      kernelTree: boolean | null;
      kernel: { clients: number };
    };
    return { code: run.status, ...parsed };
  };
  // Hidden files beside the archives are their binding indexes, no archives.
  const archives = (): string[] =>
    existsSync(sandbox.archiveDir)
      ? readdirSync(sandbox.archiveDir)
          .filter((name) => !name.startsWith('.'))
          .sort()
      : [];
  const expectTranslated = (probes: readonly Probe[]): void => {
    for (const { local, proto, seen } of probes) {
      const block = lookup(local);
      expect({ local, proto, seenAddress: seen?.address }).toEqual({
        local,
        proto,
        seenAddress: block?.publicAddress,
      });
      expect(seen?.port).toBeGreaterThanOrEqual(block?.firstPort ?? Infinity);
      expect(seen?.port).toBeLessThanOrEqual(block?.lastPort ?? -Infinity);
    }
  };

  beforeAll(async () => {
    net = createTopology(CLIENTS);
    sandbox = createSandbox(backend);
    sandbox.writeProfiles([ALPHA, BETA]);
    // These tests swap whole profiles on a small server (half of its clients at once); the
    // guard against that has its own tests (test/faults/removal-guard.test.ts).
    sandbox.writeConfig({ firewall: { removalGuard: false } });
    server = await startServer(net);
  });

  afterAll(() => {
    // beforeAll may have failed half-way: clean up whatever exists.
    server?.stop();
    (net as Topology | undefined)?.destroy();
    (sandbox as Sandbox | undefined)?.remove();
  });

  test('the first apply loads the rules, writes the rules file and one archive', () => {
    if (backend === 'iptables') {
      // The original script left rules.v4 a symlink into its archive: it must become a file.
      mkdirSync(sandbox.archiveDir, { recursive: true });
      writeFileSync(join(sandbox.archiveDir, 'rules.v4.1600000000'), '*filter\nCOMMIT\n');
      symlinkSync(join(sandbox.archiveDir, 'rules.v4.1600000000'), sandbox.rulesFile);
    }
    const result = applyJson();
    expect(result.outcome).toBe('applied');
    expect(result.clients).toBe(253 + 125 + 125);
    const stat = lstatSync(sandbox.rulesFile);
    expect(stat.isFile()).toBe(true);
    expect(stat.mode & 0o777).toBe(0o640);
    const written = archives().filter((name) => name !== 'rules.v4.1600000000');
    expect(written).toHaveLength(1);
    if (backend === 'iptables') {
      expect(readFileSync(join(sandbox.archiveDir, 'rules.v4.1600000000'), 'utf8')).toBe(
        '*filter\nCOMMIT\n',
      );
    }
    const archived = readArchiveText(join(sandbox.archiveDir, written[0] ?? ''));
    expect(archived).toContain(readFileSync(sandbox.rulesFile, 'utf8'));
  });

  test('every client leaves through its own port block, for tcp and udp', async () => {
    const probes = await probe(net, CLIENTS.slice(0, 6));
    expect(probes).toHaveLength(12);
    expectTranslated(probes);
  });

  test('an unchanged second apply changes nothing at all', () => {
    const before = kernelState();
    const archivesBefore = archives();
    const fileBefore = readFileSync(sandbox.rulesFile, 'utf8');
    const result = applyJson();
    expect(result.outcome).toBe('unchanged');
    expect(kernelState()).toBe(before);
    expect(archives()).toEqual(archivesBefore);
    expect(readFileSync(sandbox.rulesFile, 'utf8')).toBe(fileBefore);
  });

  test('a changed profile list keeps untouched connections and drops the removed clients', async () => {
    const kept = await holdConnection(net, '10.42.1.2');
    const removed = await holdConnection(net, '10.42.0.2');
    try {
      const keptPort = kept.seen.port;
      const conntrackOf = (client: string) =>
        net.exec(net.gateway, ['conntrack', '-L', '-s', client], '').trim();
      expect(conntrackOf('10.42.0.2')).not.toBe('');

      sandbox.writeProfiles([BETA, GAMMA]);
      const result = applyJson();
      expect(result.outcome).toBe('applied');
      expect(result.changedClients).toBe(253);
      expect(archives().length).toBeGreaterThanOrEqual(2);

      // The untouched client's connection is alive and still uses its block.
      const answer = await kept.ping();
      expect(answer?.port).toBe(keptPort);
      // The removed client's NAT binding is gone from the kernel.
      expect(conntrackOf('10.42.0.2')).toBe('');
      expectTranslated(await probe(net, ['10.42.2.2', '10.42.1.254']));
    } finally {
      kept.close();
      removed.close();
    }
  });

  test('a failing apply (read-only archive directory) leaves kernel and files as they were', () => {
    sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
    const before = kernelState();
    const fileBefore = readFileSync(sandbox.rulesFile, 'utf8');
    const archivesBefore = archives();
    sh(['mount', '--bind', sandbox.archiveDir, sandbox.archiveDir]);
    try {
      sh(['mount', '-o', 'remount,ro,bind', sandbox.archiveDir]);
      const result = apply();
      expect(result.status).toBe(4);
      expect(result.stderr).toMatch(/archive directory .* cannot be written \(EROFS\)/);
      expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace
    } finally {
      sh(['umount', sandbox.archiveDir]);
    }
    expect(kernelState()).toBe(before);
    expect(readFileSync(sandbox.rulesFile, 'utf8')).toBe(fileBefore);
    expect(archives()).toEqual(archivesBefore);
    expect(readdirSync(sandbox.dir).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });

  if (backend === 'iptables') {
    test('a payload the kernel refuses leaves kernel and files as they were, and shows the line', () => {
      sandbox.writeProfiles([BETA, GAMMA]);
      expect(['applied', 'unchanged']).toContain(applyJson().outcome);
      // Someone else's rule jumps into one of our chains, so removing gamma's chains must fail.
      const gammaChain = /^:(TNAT-10\.42\.2\.\S+)/m.exec(kernelState())?.[1] ?? '';
      expect(gammaChain).not.toBe('');
      net.exec(net.gateway, ['iptables', '-t', 'nat', '-N', 'OPERATOR']);
      net.exec(net.gateway, ['iptables', '-t', 'nat', '-A', 'OPERATOR', '-j', gammaChain]);
      sandbox.writeProfiles([BETA]);
      const before = kernelState();
      const fileBefore = readFileSync(sandbox.rulesFile, 'utf8');
      const archivesBefore = archives();
      const result = apply();
      expect(result.status).toBe(4);
      expect(result.stderr).toMatch(/refused line \d+ of the iptables-restore payload/);
      expect(result.stderr).toMatch(/^> +\d+ {2}/m);
      expect(kernelState()).toBe(before);
      expect(readFileSync(sandbox.rulesFile, 'utf8')).toBe(fileBefore);
      expect(archives()).toEqual(archivesBefore);
      net.exec(net.gateway, ['iptables', '-t', 'nat', '-F', 'OPERATOR']);
      net.exec(net.gateway, ['iptables', '-t', 'nat', '-X', 'OPERATOR']);
    });
  }

  test('a flushed nat table is detected and repaired without a new archive', async () => {
    sandbox.writeProfiles([BETA, GAMMA]);
    applyJson();
    const archivesBefore = archives();
    if (backend === 'iptables') net.exec(net.gateway, ['iptables', '-t', 'nat', '-F']);
    else net.exec(net.gateway, ['nft', 'delete', 'table', 'ip', 'traceable_nat']);
    const status = () => {
      const { code, agree, kernel } = statusJson();
      return { code, agree, kernelClients: kernel.clients };
    };
    expect(status()).toEqual({ code: 1, agree: false, kernelClients: 0 });
    const result = applyJson();
    expect(result.outcome).toBe('repaired');
    expect(status()).toEqual({ code: 0, agree: true, kernelClients: 125 + 125 + 253 });
    expect(archives()).toEqual(archivesBefore);
    expectTranslated(await probe(net, ['10.42.1.2', '10.42.2.2']));
  });

  test('check asks the kernel whether the rules file a boot loads would load, and names the line', () => {
    applyJson();
    const check = () => runCli(net.gateway, ['check', '--config', sandbox.configFile]);
    const tool = backend === 'iptables' ? 'iptables-restore --test' : 'nft -c -f';
    const loads = check();
    expect(loads.stdout).toContain(
      `ok    rules file at boot: ${sandbox.rulesFile} loads (${tool})`,
    );
    const good = readFileSync(sandbox.rulesFile, 'utf8');
    try {
      // A rule of the operator's with an option iptables does not know, or a statement nft
      // does not know: the merge takes them as they are, the kernel would not. (Neither tool's
      // test sees a jump to a missing chain.)
      writeFileSync(
        sandbox.rulesFile,
        backend === 'iptables'
          ? good.replace(/^COMMIT$/m, '-A POSTROUTING -o eth9 --no-such-option 1 -j ACCEPT\nCOMMIT')
          : `${good}table ip broken {\n\tchain c {\n\t\tno_such_statement\n\t}\n}\n`,
      );
      const refused = check();
      expect(refused.status).toBe(2);
      expect(refused.stdout).toContain('ok    port blocks and rules file: ');
      const why =
        backend === 'iptables' ? 'unknown option "--no-such-option"' : ':\\d+:\\d+-\\d+: Error: ';
      expect(refused.stdout).toMatch(
        new RegExp(
          `^FAIL  rules file at boot: ${sandbox.rulesFile.replaceAll('.', '\\.')} would not load at boot \\(${tool.replace('-f', '')}.*${why}.*\\): correct it`,
          'm',
        ),
      );
      if (backend === 'iptables') {
        // A jump to a chain the file does not declare: --test passes it, a boot's load refuses
        // the whole file ("Chain 'operator-gone' does not exist").
        const lines = good.split('\n');
        const commit = lines.indexOf('COMMIT', lines.indexOf('*nat'));
        lines.splice(commit, 0, '-A POSTROUTING -o eth9 -j operator-gone');
        writeFileSync(sandbox.rulesFile, lines.join('\n'));
        const line = commit + 1;
        const jumped = check();
        expect(jumped.status).toBe(2);
        expect(jumped.stdout).toContain(
          `FAIL  rules file at boot: ${sandbox.rulesFile} would not load at boot: line ${line} jumps to operator-gone, which is neither a chain of its *nat table nor a target iptables knows;`,
        );
        // status says it beside what is active; its exit stays the kernel's agreement.
        const status = runCli(net.gateway, ['status', '--config', sandbox.configFile]);
        expect(status.stdout).toContain(
          `\nboot: ${sandbox.rulesFile} would not load at boot: line ${line} jumps to operator-gone`,
        );
        expect(status.status).toBe(0);
      }
    } finally {
      writeFileSync(sandbox.rulesFile, good);
    }
    expect(check().stdout).toContain(`ok    rules file at boot: ${sandbox.rulesFile} loads`);
  });

  if (backend === 'nftables') {
    test('check warns while the nftables.conf a boot loads does not include the rules file', () => {
      applyJson();
      // ip netns exec mounts /etc/netns/<name>/nftables.conf over /etc/nftables.conf.
      const etc = join('/etc/netns', net.gateway);
      const madeNetnsDir = !existsSync('/etc/netns');
      mkdirSync(etc, { recursive: true });
      try {
        const conf = join(etc, 'nftables.conf');
        const eduvpn = '#!/usr/sbin/nft -f\nflush ruleset\ntable inet filter {\n}\n';
        writeFileSync(conf, eduvpn);
        const check = () => runCli(net.gateway, ['check', '--config', sandbox.configFile]);
        expect(check().stdout).toContain(
          `warn  rules file at boot: /etc/nftables.conf does not include ${sandbox.rulesFile}: at boot, and at every systemctl restart nftables`,
        );
        const status = () => runCli(net.gateway, ['status', '--config', sandbox.configFile]);
        expect(status().stdout).toContain(
          `\nboot: /etc/nftables.conf does not include ${sandbox.rulesFile}:`,
        );
        writeFileSync(conf, `${eduvpn}include "${sandbox.rulesFile}"\n`);
        // nft reads the include as check does: the boot file loads, our table in it.
        net.exec(net.gateway, ['nft', '-c', '-f', '/etc/nftables.conf']);
        const included = check();
        expect(included.stdout).toContain('ok    rules file at boot: ');
        expect(included.stdout).not.toContain('rules file at boot: /etc/nftables.conf');
        expect(status().stdout).not.toContain('\nboot: ');

        // Before the first apply: a plain include of the missing file stops nft (no firewall at
        // boot at all), the wildcard that check suggests does not.
        const kept = `${sandbox.rulesFile}.kept`;
        renameSync(sandbox.rulesFile, kept);
        try {
          expect(() => net.exec(net.gateway, ['nft', '-c', '-f', '/etc/nftables.conf'])).toThrow(
            /File not found/,
          );
          const stops = check();
          expect(stops.status).toBe(2);
          expect(stops.stdout).toContain(
            `FAIL  rules file at boot: /etc/nftables.conf includes ${sandbox.rulesFile}, which does not exist: nft stops at that include`,
          );
          const wildcard = /include "[^"]+\[.\]"/.exec(stops.stdout)?.[0] ?? '';
          expect(wildcard).not.toBe('');
          writeFileSync(conf, `${eduvpn}${wildcard}\n`);
          net.exec(net.gateway, ['nft', '-c', '-f', '/etc/nftables.conf']);
          expect(check().stdout).toContain(
            `warn  rules file at boot: /etc/nftables.conf does not include ${sandbox.rulesFile}`,
          );
        } finally {
          renameSync(kept, sandbox.rulesFile);
        }
        // With the file back, the same wildcard includes it.
        expect(check().stdout).not.toContain('rules file at boot: /etc/nftables.conf');
      } finally {
        rmSync(madeNetnsDir ? '/etc/netns' : etc, { recursive: true, force: true });
      }
    });
  }

  test('one rule of ours deleted by hand, every binding still there: status disagrees until --verify', () => {
    applyJson();
    const status = () => {
      const { code, agree, kernelTree } = statusJson();
      return { code, agree, kernelTree };
    };
    expect(status()).toEqual({ code: 0, agree: true, kernelTree: true });
    if (backend === 'iptables') {
      // Our jump from POSTROUTING: every client's rules stay, none of them is reached.
      const jump = /^-A POSTROUTING (.*-j TNAT)$/m.exec(
        net.exec(net.gateway, ['iptables', '-t', 'nat', '-S', 'POSTROUTING']),
      )?.[1];
      expect(jump).toBeDefined();
      net.exec(net.gateway, [
        'iptables',
        '-t',
        'nat',
        '-D',
        'POSTROUTING',
        ...(jump ?? '').split(' '),
      ]);
    } else {
      // The rule for everything but tcp and udp (the maps stay whole).
      const listed = net.exec(
        net.gateway,
        'nft -a list chain ip traceable_nat postrouting'.split(' '),
      );
      const handle = /l4proto != \{ tcp, udp \}.* # handle (\d+)$/m.exec(listed)?.[1];
      expect(handle).toBeDefined();
      net.exec(net.gateway, [
        ...'nft delete rule ip traceable_nat postrouting handle'.split(' '),
        handle ?? '',
      ]);
    }
    // Before: the bindings read back the same, and status said "agree: yes".
    expect(status()).toEqual({ code: 1, agree: false, kernelTree: false });
    expect(applyJson('--verify')).toMatchObject({ outcome: 'repaired', kernelRead: 'full' });
    expect(status()).toEqual({ code: 0, agree: true, kernelTree: true });
  });

  if (backend === 'iptables') {
    test('the canary names the active archive; a plain apply trusts it, --verify reads all', async () => {
      const ipt = (...args: string[]) => net.exec(net.gateway, ['iptables', '-t', 'nat', ...args]);
      const canary = (): string | undefined => {
        const listed = net.exec(net.gateway, ['iptables', '-t', 'nat', '-S'], '');
        return /^-A TNAT_APPLIED -m comment --comment "?sha256:([0-9a-f]{64})/m.exec(listed)?.[1];
      };
      const head = (): string | undefined => {
        const state = JSON.parse(readFileSync(sandbox.stateFile, 'utf8')) as {
          archiveDirs: Record<string, { head?: { sha256: string } }>;
        };
        return Object.values(state.archiveDirs)[0]?.head?.sha256;
      };
      // A leaf is a chain that holds the SNAT rules themselves (the chains above it only jump).
      const leafOf = (prefix: string): string =>
        new RegExp(`^-A (TNAT-\\S+) -s ${prefix.replaceAll('.', '\\.')}\\S* .*-j SNAT`, 'm').exec(
          net.exec(net.gateway, ['iptables', '-t', 'nat', '-S'], ''),
        )?.[1] ?? '';

      sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
      applyJson();
      expect(canary()).toMatch(/^[0-9a-f]{64}$/);
      expect(canary()).toBe(head());
      // A change is decided on the canary and the archive, without reading the whole table.
      sandbox.writeProfiles([BETA, GAMMA]);
      const changed = applyJson();
      expect(changed).toMatchObject({ outcome: 'applied', kernelRead: 'canary' });
      expect(canary()).toBe(head());
      expectTranslated(await probe(net, ['10.42.1.2', '10.42.2.2']));
      expect(applyJson()).toMatchObject({ outcome: 'unchanged', kernelRead: 'canary' });

      // The documented limit: a hand-flushed leaf under a canary that still agrees is seen only
      // by a full read (apply --verify, the daemon's start, reload and periodic check).
      const archivesBefore = archives();
      const leaf = leafOf('10.42.2.');
      expect(leaf).not.toBe('');
      ipt('-F', leaf);
      expect(applyJson()).toMatchObject({ outcome: 'unchanged', kernelRead: 'canary' });
      expect(applyJson('--verify')).toMatchObject({ outcome: 'repaired', kernelRead: 'full' });
      expect(ipt('-S', leaf)).toMatch(/-j SNAT/);

      // Our chains deleted by hand, the canary left: the payload built on its word is refused
      // (it jumps to chains that are gone), so the apply reads the table and loads it whole.
      const listed = net.exec(net.gateway, ['iptables', '-t', 'nat', '-S'], '');
      const jump = /^-A POSTROUTING (.*-j TNAT)$/m.exec(listed)?.[1] ?? '';
      const ours = [...listed.matchAll(/^-N (TNAT(?:-\S+)?)$/gm)].map((match) => match[1] ?? '');
      expect(ours.length).toBeGreaterThan(3);
      ipt('-D', 'POSTROUTING', ...jump.split(' '));
      for (const chain of ours) ipt('-F', chain);
      for (const chain of ours) ipt('-X', chain);
      expect(canary()).toBe(head());
      expect(applyJson()).toMatchObject({ outcome: 'repaired', kernelRead: 'canary' });
      expectTranslated(await probe(net, ['10.42.1.2', '10.42.2.2']));

      // A canary that names another archive is not believed: the table is read and repaired,
      // and the canary names the active archive again.
      ipt('-F', leaf);
      ipt('-F', 'TNAT_APPLIED');
      ipt('-A', 'TNAT_APPLIED', '-m', 'comment', '--comment', `sha256:${'0'.repeat(64)}`);
      expect(applyJson()).toMatchObject({ outcome: 'repaired', kernelRead: 'full' });
      expect(canary()).toBe(head());
      expect(ipt('-S', leaf)).toMatch(/-j SNAT/);

      // No canary at all (a boot loads the rules file, which never holds it): read whole, and
      // the canary is set again although the rules themselves are right.
      ipt('-F', 'TNAT_APPLIED');
      ipt('-X', 'TNAT_APPLIED');
      expect(applyJson()).toMatchObject({ outcome: 'unchanged', kernelRead: 'full' });
      expect(canary()).toBe(head());
      expect(applyJson()).toMatchObject({ outcome: 'unchanged', kernelRead: 'canary' });
      expect(archives()).toEqual(archivesBefore);
      expect(readFileSync(sandbox.rulesFile, 'utf8')).not.toContain('TNAT_APPLIED');
    });
  }

  if (backend === 'nftables') {
    test('the canary chain names the active archive; a plain apply trusts it, --verify reads all', async () => {
      const nft = (...args: string[]) => net.exec(net.gateway, ['nft', ...args]);
      const canaries = (): string[] =>
        [...nft('-j', 'list', 'chains', 'ip').matchAll(/"name": "applied_([0-9a-f]+)"/g)].map(
          (match) => match[1] ?? '',
        );
      const head = (): string | undefined => {
        const state = JSON.parse(readFileSync(sandbox.stateFile, 'utf8')) as {
          archiveDirs: Record<string, { head?: { sha256: string } }>;
        };
        return Object.values(state.archiveDirs)[0]?.head?.sha256;
      };
      const element = (client: string): boolean =>
        nft('list', 'map', 'ip', 'traceable_nat', 'clients').includes(`${client} : `);
      const deleteElement = (client: string) =>
        nft('delete', 'element', 'ip', 'traceable_nat', 'clients', `{ ${client} }`);

      sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
      applyJson();
      expect(canaries()).toEqual([head()]);
      // A change is decided on the canary and the archive, without listing the maps.
      sandbox.writeProfiles([BETA, GAMMA]);
      expect(applyJson()).toMatchObject({ outcome: 'applied', kernelRead: 'canary' });
      expect(canaries()).toEqual([head()]);
      expectTranslated(await probe(net, ['10.42.1.2', '10.42.2.2']));
      expect(applyJson()).toMatchObject({ outcome: 'unchanged', kernelRead: 'canary' });

      // The documented limit: an element deleted by hand under a canary that still agrees is
      // seen only by a full read (apply --verify, the daemon's start, reload and periodic check).
      const archivesBefore = archives();
      deleteElement('10.42.2.2');
      expect(applyJson()).toMatchObject({ outcome: 'unchanged', kernelRead: 'canary' });
      expect(applyJson('--verify')).toMatchObject({ outcome: 'repaired', kernelRead: 'full' });
      expect(element('10.42.2.2')).toBe(true);
      expect(archives()).toEqual(archivesBefore);

      // A change built on the canary's word that nft refuses (it deletes an element that is no
      // longer there) is built again from the whole table, in the same apply.
      deleteElement('10.42.1.2');
      sandbox.writeProfiles([GAMMA]);
      expect(applyJson()).toMatchObject({ outcome: 'applied', kernelRead: 'canary' });
      expect(element('10.42.1.3')).toBe(false);
      expect(element('10.42.2.2')).toBe(true);
      // Its other map still held the client: the table was replaced whole to drop it too.
      expect(nft('list', 'map', 'ip', 'traceable_nat', 'others')).not.toContain('10.42.1.2 :');
      expect(canaries()).toEqual([head()]);

      // A canary that names another archive is not believed: the table is read and repaired,
      // and the canary names the active archive again.
      deleteElement('10.42.2.2');
      nft('delete', 'chain', 'ip', 'traceable_nat', `applied_${head() ?? ''}`);
      nft('add', 'chain', 'ip', 'traceable_nat', `applied_${'0'.repeat(64)}`);
      expect(applyJson()).toMatchObject({ outcome: 'repaired', kernelRead: 'full' });
      expect(canaries()).toEqual([head()]);
      expect(element('10.42.2.2')).toBe(true);

      // No canary at all (a boot loads the rules file, which never holds it): read whole, and
      // the canary is set again although the rules themselves are right.
      const archivesAfter = archives();
      nft('delete', 'chain', 'ip', 'traceable_nat', `applied_${head() ?? ''}`);
      expect(applyJson()).toMatchObject({ outcome: 'unchanged', kernelRead: 'full' });
      expect(canaries()).toEqual([head()]);
      expect(applyJson()).toMatchObject({ outcome: 'unchanged', kernelRead: 'canary' });
      expect(archives()).toEqual(archivesAfter);
      expect(readFileSync(sandbox.rulesFile, 'utf8')).not.toContain('applied_');

      // The daemon's change trusts its last apply and never lists the table: the canary that
      // apply set goes in the same transaction, which real nft takes whether it is there or
      // not, and the next plain apply finds one canary and trusts it.
      const config = loadConfig(sandbox.configFile);
      const deps = { runner: netnsRunner(net.gateway), clock: systemClock, discover };
      const trustedAfter = (result: ApplyResult) => ({
        plan: result.plan,
        archive: result.activeArchive,
        archiveSha256: result.planArchive,
        config,
      });
      let last = await applyRuleset(config, deps);
      for (const [profiles, dropCanary] of [
        [[ALPHA, BETA, GAMMA], false],
        [[BETA, GAMMA], true],
      ] as const) {
        if (dropCanary) nft('delete', 'chain', 'ip', 'traceable_nat', `applied_${head() ?? ''}`);
        sandbox.writeProfiles([...profiles]);
        last = await applyRuleset(config, deps, { trusted: trustedAfter(last) });
        expect(last).toMatchObject({ outcome: 'applied', kernelRead: 'trusted' });
        expect(canaries()).toEqual([head()]);
        expect(applyJson()).toMatchObject({ outcome: 'unchanged', kernelRead: 'canary' });
      }
    });
  }

  test('a second applier waits for the lock, then names who holds it', () => {
    const lockFile = join(sandbox.dir, 'lock');
    writeFileSync(lockFile, JSON.stringify({ pid: process.pid, command: 'test', since: 'now' }));
    try {
      const result = apply();
      expect(result.status).toBe(4);
      expect(result.stderr).toContain(`held by process ${process.pid} (test, since now)`);
    } finally {
      sh(['rm', '-f', lockFile]);
    }
  });

  test('vpn-generate-natfw: -n prints the file, -v says unchanged, -c runs after a write', () => {
    const natfw = (...args: string[]) =>
      runCli(net.gateway, ['--config', sandbox.configFile, ...args], 'vpn-generate-natfw');
    const dry = natfw('-n');
    expect(dry.status).toBe(0);
    expect(dry.stdout).toBe(readFileSync(sandbox.rulesFile, 'utf8'));
    expect(natfw('-v').stdout).toMatch(/^unchanged/);
    expect(natfw().stdout).toBe('');
    const marker = join(sandbox.dir, 'after-write');
    sandbox.writeProfiles([ALPHA, BETA, GAMMA]);
    const result = natfw('-c', `touch ${marker}`);
    expect(result.stderr).toBe('');
    expect(result.stdout).toMatch(/^applied/);
    expect(existsSync(marker)).toBe(true);
  });
});
