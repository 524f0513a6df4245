import { readFileSync } from 'node:fs';
import { parseConfig } from '../src/config.js';
import { TnatError } from '../src/errors.js';

const minimal = 'nat:\n  publicAddresses: [192.0.2.1]\n  outInterface: eth0\n';

function errorOf(text: string): TnatError {
  try {
    parseConfig(text, 'test.yaml');
  } catch (error) {
    if (error instanceof TnatError) return error;
    throw error;
  }
  throw new Error('expected parseConfig to fail');
}

describe('parseConfig', () => {
  test('config.example.yaml is valid and matches the documented defaults', () => {
    const fromExample = parseConfig(
      readFileSync('config.example.yaml', 'utf8'),
      'config.example.yaml',
    );
    const fromDefaults = parseConfig(minimal, 'minimal.yaml');
    expect(fromExample).toEqual(fromDefaults);
    expect(fromDefaults.eduvpn.portalConfig).toBe('/etc/vpn-user-portal/config.php');
    expect(fromDefaults.nat.portRange).toEqual({ first: 1024, last: 65535 });
    expect(fromDefaults.nat.portsPerClient).toBe('auto');
    expect(fromDefaults.firewall.rulesFile).toBe('/etc/iptables/rules.v4');
    expect(fromDefaults.daemon.settleMs).toBe(2000);
  });

  test('the nftables backend has its own default paths', () => {
    const config = parseConfig(`${minimal}firewall:\n  backend: nftables\n`, 'x.yaml');
    expect(config.firewall.rulesFile).toBe('/etc/traceable-nat/traceable-nat.nft');
    expect(config.firewall.archiveDir).toBe('/etc/traceable-nat/archive');
  });

  test('the result is frozen', () => {
    const config = parseConfig(minimal, 'x.yaml');
    expect(Object.isFrozen(config.nat.publicAddresses)).toBe(true);
    expect(Object.isFrozen(config.eduvpn)).toBe(true);
  });

  test.each([
    ['8080', { first: 8080, last: 8080 }],
    ['2000 - 3000', { first: 2000, last: 3000 }],
  ])('port range %s', (range, expected) => {
    const config = parseConfig(`${minimal}  portRange: "${range}"\n`, 'x.yaml');
    expect(config.nat.portRange).toEqual(expected);
  });

  test.each([
    [
      'an unknown key, with its line',
      `${minimal}  portRnage: 1-2\n`,
      /test\.yaml:4: unknown key nat\.portRnage/,
    ],
    ['a missing required key', 'nat:\n  outInterface: eth0\n', /nat\.publicAddresses is missing/],
    [
      'a bad address, with its line',
      `nat:\n  publicAddresses:\n    - 192.0.2.300\n  outInterface: eth0\n`,
      /test\.yaml:3: .*"192\.0\.2\.300" is not an IPv4 address/,
    ],
    [
      'a block size that is no power of two',
      `${minimal}  portsPerClient: 100\n`,
      /use a power of two/,
    ],
    ['a reversed port range', `${minimal}  portRange: 3000-2000\n`, /not a port or port range/],
    [
      'an exclusion outside the range',
      `${minimal}  portRange: 2000-3000\n  excludePorts: [80]\n`,
      /lies outside nat\.portRange/,
    ],
    [
      'a YAML syntax error, with line and column',
      'nat: [\n',
      /test\.yaml:2:1: .*fix the YAML syntax/,
    ],
    ['an unknown backend', `${minimal}firewall:\n  backend: pf\n`, /firewall\.backend/],
  ])('rejects %s', (_name, text, message) => {
    const error = errorOf(text);
    expect(error.code).toBe('E_CONFIG');
    expect(error.message).toMatch(message);
  });

  test('reports every problem at once, each with its key path and line', () => {
    const error = errorOf(
      'eduvpn:\n  nodeNumber: -1\nnat:\n  publicAddresses: []\n  outInterface: "eth 0"\nextra: 1\n',
    );
    expect(error.message).toMatch(/^4 problems/);
    expect(error.message).toContain('test.yaml:2: eduvpn.nodeNumber');
    expect(error.message).toContain('test.yaml:4: nat.publicAddresses');
    expect(error.message).toContain('test.yaml:5: nat.outInterface');
    expect(error.message).toContain('unknown key extra');
  });
});
