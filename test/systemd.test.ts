/** The systemd unit: it verifies, has what Type=notify needs, and stays well hardened. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { unitLaunch } from '../bench/daemon.js';

const UNIT = 'systemd/traceable-nat.service';
const text = readFileSync(UNIT, 'utf8');

function setting(key: string): string[] {
  return [...text.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((match) => match[1] ?? '');
}

describe('systemd/traceable-nat.service', () => {
  test('systemd-analyze verify accepts it', () => {
    expect(() =>
      execFileSync('systemd-analyze', ['verify', UNIT], { stdio: 'pipe' }),
    ).not.toThrow();
  });

  test.each([
    ['Type', ['notify']],
    ['Restart', ['on-failure']],
    ['NotifyAccess', ['main']],
    ['ExecReload', ['/bin/kill -HUP $MAINPID']],
  ])('%s', (key, expected) => {
    expect(setting(key)).toEqual(expected);
  });

  test('node is the main process (sd_notify from the main pid), running the daemon', () => {
    expect(setting('ExecStart')[0]).toMatch(
      /^\/usr\/bin\/node (?:--\S+ )*\S+\/bin\/traceable-nat daemon /,
    );
  });

  test("the bench starts its daemon with the unit's memory settings (node flags, environment)", () => {
    expect(unitLaunch(text)).toEqual({
      env: ['MALLOC_MMAP_THRESHOLD_=65536'],
      nodeFlags: ['--max-semi-space-size=4'],
    });
  });

  test('it starts after the firewall services and has a watchdog', () => {
    expect(setting('After')[0]).toContain('netfilter-persistent.service');
    expect(setting('After')[0]).toContain('nftables.service');
    expect(Number(setting('WatchdogSec')[0])).toBeGreaterThan(0);
  });

  test('V8 keeps its JIT (no MemoryDenyWriteExecute) and only network capabilities remain', () => {
    expect(setting('MemoryDenyWriteExecute')).toEqual([]);
    expect(setting('CapabilityBoundingSet')[0]?.split(' ').sort()).toEqual(
      ['CAP_DAC_READ_SEARCH', 'CAP_NET_ADMIN', 'CAP_NET_RAW'].sort(),
    );
  });

  test.each([
    ['StateDirectory', ['traceable-nat']],
    ['IPAddressDeny', ['any']],
    ['SocketBindDeny', ['any']],
    ['ProtectSystem', ['strict']],
    ['PrivateMounts', ['yes']],
    ['ProcSubset', ['pid']],
  ])('hardening: %s', (key, expected) => {
    expect(setting(key)).toEqual(expected);
  });

  test('systemd-analyze security rates it at most 2.0 (issue 12; it was 2.5)', () => {
    const output = execFileSync(
      'systemd-analyze',
      ['security', '--offline=true', '--no-pager', UNIT],
      {
        encoding: 'utf8',
      },
    );
    const score = Number(
      /Overall exposure level for traceable-nat\.service: ([\d.]+)/.exec(output)?.[1],
    );
    expect(score).toBeLessThanOrEqual(2.0);
  });
});
