/**
 * Issue 11, item 1: a nearly full disk. A write that stops short (write(2) returns less than it
 * was given, then ENOSPC) must fail the apply before the kernel changes: no archive cut at
 * 64 KiB with a wrong printed hash, no rules.v4 cut mid-table (it is what loads at boot).
 * Real tmpfs mounts of 64 KiB, real kernel in a namespace.
 */
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { isRoot, sh } from '../helpers/netns.js';
import { createFaultSite, readText, type FaultSite } from './site.js';

// Mounting tmpfs and building namespaces needs root; CI runs as root.
const describeKernel = isRoot() ? describe : describe.skip;

/** A profile whose ruleset fits in a few KiB (29 clients), and one far larger than 64 KiB. */
const SMALL = { id: 'small', wireguard: '10.42.0.0/27' };
const LARGE = { id: 'large', wireguard: '10.43.0.0/22' };
/** 16 ports each, so that 1 050 clients fit on one public address. */
const NAT = { portsPerClient: 16 };

function mountSmallTmpfs(dir: string): void {
  mkdirSync(dir, { recursive: true });
  sh(['mount', '-t', 'tmpfs', '-o', 'size=64k,mode=0750', 'tmpfs', dir]);
}

function unmount(dir: string): void {
  try {
    sh(['umount', dir]);
  } catch {
    // not mounted (the test failed before mounting)
  }
}

describeKernel.each(['iptables', 'nftables'] as const)('a nearly full disk (%s)', (backend) => {
  describe('the archive directory is full', () => {
    let site: FaultSite;
    let archiveDir: string;

    beforeAll(() => {
      // Plain text, so that the large ruleset's archive is well over 64 KiB (gzip would fit it).
      site = createFaultSite(backend, { compressArchives: false }, NAT);
      archiveDir = site.sandbox.archiveDir;
      mountSmallTmpfs(archiveDir);
    });
    afterAll(() => {
      unmount(archiveDir);
      site.destroy();
    });

    test('the apply fails before the kernel changes, and nothing is cut', () => {
      site.sandbox.writeProfiles([SMALL]);
      expect(site.cli(['apply']).status).toBe(0);
      const kernelBefore = site.kernelState();
      const archivesBefore = site.archives();
      expect(archivesBefore).toHaveLength(1);

      site.sandbox.writeProfiles([SMALL, LARGE]);
      const result = site.cli(['apply']);
      expect(result.stderr).toMatch(/archive directory .* cannot be written \(ENOSPC\)/);
      expect(result.status).toBe(4);
      expect(site.kernelState()).toBe(kernelBefore);
      expect(site.archives()).toEqual(archivesBefore);
      expect(site.leftovers()).toEqual([]);
      // Every archive there is whole: check vouches for the chain and its anchored head.
      const check = site.cli(['check']);
      expect(check.stdout).toMatch(/ok {4}archive hash chain/);
      expect(check.stdout).toMatch(/ok {4}archive head/);
    });
  });

  describe('the rules file system is full', () => {
    let site: FaultSite;
    let rulesDir: string;

    beforeAll(() => {
      site = createFaultSite(backend);
      rulesDir = join(site.sandbox.dir, 'rules');
      mountSmallTmpfs(rulesDir);
      site.sandbox.writeConfig({
        nat: NAT,
        firewall: { rulesFile: join(rulesDir, backend === 'iptables' ? 'rules.v4' : 'tnat.nft') },
      });
    });
    afterAll(() => {
      unmount(rulesDir);
      site.destroy();
    });

    test('the rules file stays whole and loadable, and the kernel keeps the active rules', () => {
      const rulesFile = join(rulesDir, backend === 'iptables' ? 'rules.v4' : 'tnat.nft');
      site.sandbox.writeProfiles([SMALL]);
      expect(site.cli(['apply']).status).toBe(0);
      const fileBefore = readText(rulesFile);
      const kernelBefore = site.kernelState();
      const archivesBefore = site.archives();

      site.sandbox.writeProfiles([SMALL, LARGE]);
      const result = site.cli(['apply']);
      expect(result.stderr).toMatch(/cannot be written \(ENOSPC\)/);
      expect(result.status).toBe(4);
      expect(readText(rulesFile)).toBe(fileBefore);
      expect(site.kernelState()).toBe(kernelBefore);
      expect(site.archives()).toEqual(archivesBefore);
      expect(site.leftovers()).toEqual([]);
      // What boot would load is still a complete ruleset.
      if (backend === 'iptables') {
        site.net.exec(site.net.gateway, ['iptables-restore', '--test'], fileBefore);
      } else {
        site.net.exec(site.net.gateway, ['nft', '-c', '-f', rulesFile]);
      }
    });
  });
});

describeKernel('a nearly full disk under rules.v6 (iptables with nat6)', () => {
  let site: FaultSite;
  let rulesDir: string;
  const rulesFile6 = () => join(rulesDir, 'rules.v6');
  /** Both families' NAT state in the kernel. */
  const kernel = () =>
    ['iptables-save', 'ip6tables-save']
      .map((save) => site.net.exec(site.net.gateway, [save, '-t', 'nat']))
      .join('')
      .replace(/^#.*\n/gm, '');

  beforeAll(() => {
    site = createFaultSite('iptables');
    rulesDir = join(site.sandbox.dir, 'rules6');
    mountSmallTmpfs(rulesDir);
    site.sandbox.writeConfig({
      nat: NAT,
      nat6: { publicAddresses: ['2001:db8::1'] },
      firewall: { rulesFile6: rulesFile6() },
    });
  });
  afterAll(() => {
    unmount(rulesDir);
    site.destroy();
  });

  test('neither family changes, rules.v4 and rules.v6 stay whole, no archive claims activation', () => {
    site.sandbox.writeProfiles([SMALL]);
    expect(site.cli(['apply']).status).toBe(0);
    const filesBefore = [site.sandbox.rulesFile, rulesFile6()].map(readText);
    const kernelBefore = kernel();
    const archivesBefore = site.archives();

    site.sandbox.writeProfiles([SMALL, LARGE]);
    const result = site.cli(['apply']);
    expect(result.stderr).toMatch(/rules\.v6 cannot be written \(ENOSPC\)/);
    expect(result.status).toBe(4);
    expect([site.sandbox.rulesFile, rulesFile6()].map(readText)).toEqual(filesBefore);
    expect(kernel()).toBe(kernelBefore);
    expect(site.archives()).toEqual(archivesBefore);
    expect(site.leftovers()).toEqual([]);
    expect(readdirSync(rulesDir)).toEqual(['rules.v6']);
    site.net.exec(site.net.gateway, ['ip6tables-restore', '--test'], filesBefore[1]);
  });
});
