/**
 * Why a single load needs no test run before it: iptables-restore and nft -f each take a
 * payload whole or not at all. Against the real tools, inside a namespace this test makes and
 * deletes (no link out of it), through IptablesKernel and NftKernel themselves.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { TnatError } from '../../src/errors.js';
import { IptablesKernel } from '../../src/netfilter/iptables.js';
import { NftKernel } from '../../src/netfilter/nftables.js';
import { readFixture } from '../render/golden.js';
import { netnsRunner } from '../helpers/netns-runner.js';

// Making a namespace needs root; CI runs the suite as root.
const describeAsRoot = process.getuid?.() === 0 ? describe : describe.skip;

describeAsRoot('a refused load changes nothing (real kernel, network namespace)', () => {
  const namespace = `tn-atomic-${randomBytes(4).toString('hex')}`;
  const runner = netnsRunner(namespace);
  const inNamespace = (command: readonly string[], input?: string): string =>
    execFileSync('ip', ['netns', 'exec', namespace, ...command], { input, encoding: 'utf8' });
  let created = false;

  beforeAll(() => {
    execFileSync('ip', ['netns', 'add', namespace]);
    created = true;
  });

  afterAll(() => {
    if (created) execFileSync('ip', ['netns', 'del', namespace]);
  });

  test('iptables-restore: a rule it refuses after good ones, and input cut before COMMIT', async () => {
    const kernel = new IptablesKernel(runner, 'iptables');
    await kernel.load('*nat\n:TNAT_KEEP - [0:0]\n-A TNAT_KEEP -j RETURN\nCOMMIT\n');
    const before = inNamespace(['iptables', '-t', 'nat', '-S']);
    const refused = [
      '*nat\n:TNAT_NEW - [0:0]\n-A TNAT_NEW -j RETURN\n-F TNAT_KEEP\n-A TNAT_MISSING -j RETURN\nCOMMIT\n',
      '*nat\n:TNAT_NEW - [0:0]\n-A TNAT_NEW -j RETURN\n-F TNAT_KEEP\n',
    ];
    for (const payload of refused) {
      await expect(kernel.load(payload)).rejects.toThrow(TnatError);
      expect(inNamespace(['iptables', '-t', 'nat', '-S'])).toBe(before);
    }
    expect(before).toContain('-A TNAT_KEEP -j RETURN');
  });

  test('nft -f: an element delete it refuses after adds and deletes that would succeed', async () => {
    const kernel = new NftKernel(runner, 'traceable_nat');
    await kernel.load(readFixture('tiny.nft'));
    const before = inNamespace(['nft', 'list', 'table', 'ip', 'traceable_nat']);
    const transaction = [
      'add chain ip traceable_nat applied_new',
      'delete element ip traceable_nat others { 10.42.0.2 }',
      'add element ip traceable_nat others { 10.42.0.9 : 192.0.2.1 }',
      'delete element ip traceable_nat clients { 10.42.0.99 }',
      '',
    ].join('\n');
    await expect(kernel.load(transaction)).rejects.toThrow(/line 4/);
    expect(inNamespace(['nft', 'list', 'table', 'ip', 'traceable_nat'])).toBe(before);
    expect(before).toContain('10.42.0.2 : 192.0.2.1');
  });
});
