/**
 * A small eduVPN server for the fault tests: a gateway namespace with its own netfilter state,
 * a sandbox on disk, and the real CLI run inside the namespace. Every fault test starts from
 * here, breaks one thing, and checks that the promises still hold.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTopology, type Topology } from '../helpers/netns.js';
import { createSandbox, runCli, type CliResult, type Sandbox } from '../helpers/sandbox.js';
import { ARCHIVE_FILE } from '../helpers/archive-files.js';

export { ALPHA, BETA, GAMMA } from '../helpers/profiles.js';

export interface FaultSite {
  readonly net: Topology;
  readonly sandbox: Sandbox;
  /** `traceable-nat <args> --config <sandbox>` inside the gateway namespace. */
  cli(args: readonly string[], env?: Readonly<Record<string, string>>): CliResult;
  /** Our part of the kernel's nat state, as text (counters and comments stripped). */
  kernelState(): string;
  archives(): string[];
  /** Files that no apply should leave behind: temporaries and pending archives. */
  leftovers(): string[];
  /** The public address and port block of a client, as the current files plan it. */
  blockOf(client: string): { publicAddress: string; firstPort: number; lastPort: number };
  destroy(): void;
}

export function createFaultSite(
  backend: 'iptables' | 'nftables',
  firewall: Record<string, unknown> = {},
  nat: Record<string, unknown> = {},
  nat6?: Record<string, unknown>,
): FaultSite {
  const net = createTopology([]);
  const sandbox = createSandbox(backend);
  sandbox.writeConfig({ firewall, nat, ...(nat6 && { nat6 }) });
  const cli = (args: readonly string[], env: Readonly<Record<string, string>> = {}): CliResult => {
    const command = [...args, '--config', sandbox.configFile];
    if (Object.keys(env).length === 0) return runCli(net.gateway, command);
    const result = spawnSync(
      'ip',
      [
        'netns',
        'exec',
        net.gateway,
        'env',
        ...Object.entries(env).map(([key, value]) => `${key}=${value}`),
        join('bin', 'traceable-nat'),
        ...command,
      ],
      { encoding: 'utf8', timeout: 60000 },
    );
    return { status: result.status, stdout: result.stdout, stderr: result.stderr };
  };
  const dirs = () => [...new Set([sandbox.archiveDir, sandbox.dir])];
  return {
    net,
    sandbox,
    cli,
    kernelState: () =>
      backend === 'iptables'
        ? net.exec(net.gateway, ['iptables-save', '-t', 'nat']).replace(/^#.*\n/gm, '')
        : net.exec(net.gateway, ['nft', 'list', 'ruleset']),
    archives: () =>
      existsSync(sandbox.archiveDir)
        ? readdirSync(sandbox.archiveDir)
            .filter((name) => ARCHIVE_FILE.test(name))
            .sort()
        : [],
    leftovers: () =>
      dirs().flatMap((dir) =>
        existsSync(dir)
          ? readdirSync(dir)
              .filter((name) => name.endsWith('.tmp') || name.endsWith('.pending'))
              .map((name) => join(dir, name))
          : [],
      ),
    blockOf(client) {
      const result = runCli(undefined, [
        'lookup',
        client,
        '--json',
        '--config',
        sandbox.configFile,
      ]);
      // The plan's block, which lookup names beside the active one until it is applied.
      const { planned } = JSON.parse(result.stdout) as {
        planned: { publicAddress: string; firstPort: number; lastPort: number } | null;
      };
      if (planned === null) throw new Error(`${client} has no block in the current files`);
      return planned;
    },
    destroy() {
      net.destroy();
      sandbox.remove();
    },
  };
}

export function readText(path: string): string {
  return readFileSync(path, 'utf8');
}
