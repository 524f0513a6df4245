/**
 * The real daemon through a sequence of profile changes, with both backends, in a network
 * namespace: between its periodic checks it trusts its last plan (it reuses that plan's text
 * for what did not change, and does not read back a rules file that is still the one it
 * wrote). After every change the rules file must be exactly what a separate process renders
 * from scratch (`apply --dry-run`), and `status` must find the rules file, the newest archive
 * and the kernel in agreement; an edit of the rules file in place, behind the daemon's back,
 * must be seen at the next change.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { spawnDaemon } from '../helpers/daemon-process.js';
import { createTopology, isRoot, type Topology } from '../helpers/netns.js';
import { collectLines, type LineLog } from '../helpers/process-lines.js';
import { ALPHA, BETA, DELTA, GAMMA } from '../helpers/profiles.js';
import { createSandbox, runCli, type Sandbox, type ProfileSpec } from '../helpers/sandbox.js';

const SETTLE_MS = 300;

// Kernel tests need root for network namespaces; CI runs as root.
const describeKernel = isRoot() ? describe : describe.skip;

/**
 * The profile sets the eduVPN portal goes through: added, removed, replaced (the removal
 * guard, which would refuse losing more than half of the clients, is off: it has its tests).
 */
const SEQUENCE: readonly (readonly ProfileSpec[])[] = [
  [ALPHA, BETA, GAMMA],
  [BETA, GAMMA],
  [ALPHA, BETA, GAMMA, DELTA],
  [BETA, DELTA],
  [ALPHA, BETA, GAMMA, DELTA],
];

/** The first port block of the text with its first port's last digit changed: the same size. */
function editOnePort(text: string): string {
  const match = /\d-\d/.exec(text);
  if (!match) throw new Error('no port range in the rules file');
  const digit = text[match.index] === '1' ? '2' : '1';
  return text.slice(0, match.index) + digit + text.slice(match.index + 1);
}

describe.each(['iptables', 'nftables'] as const)('the daemon through changes (%s)', (backend) => {
  describeKernel('against a real kernel', () => {
    let net: Topology;
    let sandbox: Sandbox;
    let daemon: ChildProcess;
    let log: LineLog;

    /** Waits for the daemon's next apply after log line `from`; returns its outcome. */
    const nextApply = async (from: number): Promise<string> => {
      const line = await log.waitFor((text) => text.includes('"outcome":"'), 20000, from);
      return (JSON.parse(line) as { outcome: string }).outcome;
    };

    /** The rules file is the from-scratch render, and file, archive and kernel agree. */
    const expectConsistent = () => {
      const dryRun = runCli(net.gateway, ['apply', '--dry-run', '--config', sandbox.configFile]);
      expect(dryRun.stderr).toBe('');
      expect(readFileSync(sandbox.rulesFile, 'utf8') === dryRun.stdout).toBe(true);
      const status = runCli(net.gateway, ['status', '--config', sandbox.configFile]);
      expect([status.status, status.stderr]).toEqual([0, '']);
    };

    beforeAll(async () => {
      net = createTopology([]);
      sandbox = createSandbox(backend);
      sandbox.writeProfiles([ALPHA, BETA]);
      sandbox.writeConfig({ firewall: { removalGuard: false } });
      const config = JSON.parse(readFileSync(sandbox.configFile, 'utf8')) as Record<
        string,
        unknown
      >;
      writeFileSync(
        sandbox.configFile,
        JSON.stringify({ ...config, daemon: { settleMs: SETTLE_MS } }, null, 2),
      );
      daemon = spawnDaemon(net.gateway, sandbox.configFile, { TRACEABLE_NAT_LOG_LEVEL: 'debug' });
      log = collectLines(daemon);
      await expect(nextApply(0)).resolves.toBe('applied');
    });

    afterAll(() => {
      // beforeAll may have failed half-way: clean up whatever exists.
      (daemon as ChildProcess | undefined)?.kill('SIGKILL');
      (net as Topology | undefined)?.destroy();
      (sandbox as Sandbox | undefined)?.remove();
    });

    test('after every change the rules file is the render from scratch, and all three agree', async () => {
      expectConsistent();
      for (const profiles of SEQUENCE) {
        const from = log.lines.length;
        sandbox.writeProfiles(profiles);
        await expect(nextApply(from)).resolves.toBe('applied');
        expectConsistent();
      }
    });

    test('an edit of the rules file in place, its modification time put back, is seen at the next write of the portal config', async () => {
      const text = readFileSync(sandbox.rulesFile, 'utf8');
      const { mtimeNs, size } = statSync(sandbox.rulesFile, { bigint: true });
      const edited = editOnePort(text);
      expect(edited).not.toBe(text);
      writeFileSync(sandbox.rulesFile, edited);
      // The modification time put back to the nanosecond: only the status change time, which
      // no one can put back, says the file changed.
      const seconds = `${mtimeNs / 1_000_000_000n}.${(mtimeNs % 1_000_000_000n).toString().padStart(9, '0')}`;
      expect(spawnSync('touch', ['-m', '-d', `@${seconds}`, sandbox.rulesFile]).status).toBe(0);
      const after = statSync(sandbox.rulesFile, { bigint: true });
      expect([after.size, after.mtimeNs]).toEqual([size, mtimeNs]);
      // The same profiles written again: taken for its own, the file would be left as it is
      // ("unchanged"), edited, disagreeing with the archive and the kernel.
      const from = log.lines.length;
      sandbox.writeProfiles(SEQUENCE.at(-1) ?? []);
      await expect(nextApply(from)).resolves.not.toBe('unchanged');
      expectConsistent();
    });
  });
});
