import { parseConfig } from '../src/config.js';
import { TnatError } from '../src/errors.js';

const nat = 'nat:\n  publicAddresses: [192.0.2.1]\n  outInterface: eth0\n  portRange: 2048-65535\n';

function parsed(nat6: string) {
  return parseConfig(`${nat}nat6:\n${nat6}`, 'test.yaml');
}

function messageOf(nat6: string): string {
  try {
    parsed(nat6);
  } catch (error) {
    if (error instanceof TnatError && error.code === 'E_CONFIG') return error.message;
    throw error;
  }
  throw new Error('expected parseConfig to fail');
}

describe('nat6 configuration', () => {
  test('without nat6, IPv6 is left alone', () => {
    expect(parseConfig(nat, 'x.yaml').nat6).toBeUndefined();
    expect(parseConfig(nat, 'x.yaml').firewall.rulesFile6).toBe('/etc/iptables/rules.v6');
  });

  test('port blocks take their port keys from nat unless given', () => {
    const config = parsed(
      '  publicAddresses: [2001:db8::1, "2001:DB8::2"]\n  portsPerClient: 256\n',
    );
    expect(config.nat6).toEqual({
      mode: 'ports',
      publicAddresses: ['2001:db8::1', '2001:DB8::2'],
      outInterface: 'eth0',
      portRange: { first: 2048, last: 65535 },
      excludePorts: [],
      portsPerClient: 256,
      minPortsPerClient: 64,
      where: { file: 'test.yaml', line: 6 },
    });
    expect(Object.isFrozen(config.nat6)).toBe(true);
  });

  test('a prefix, with its own interface', () => {
    const config = parsed('  publicPrefix: 2001:db8:100::/56\n  outInterface: eth1\n');
    expect(config.nat6).toEqual({
      mode: 'prefix',
      publicPrefix: '2001:db8:100::/56',
      outInterface: 'eth1',
      where: { file: 'test.yaml', line: 6 },
    });
  });

  test('neither key: IPv6 left alone', () => {
    expect(parsed('  outInterface: eth1\n').nat6).toBeUndefined();
  });

  test.each([
    [
      'an IPv4 address',
      '  publicAddresses: [192.0.2.7]\n',
      'test.yaml:6: nat6.publicAddresses.0: "192.0.2.7" is IPv4: nat6 takes IPv6 addresses like 2001:db8::1; IPv4 belongs in nat.publicAddresses',
    ],
    [
      'an invalid address',
      '  publicAddresses:\n    - 2001:db8:::1\n',
      'test.yaml:7: nat6.publicAddresses.0: "2001:db8:::1" is not an IPv6 address like 2001:db8::1',
    ],
    [
      'an IPv4-mapped address',
      '  publicAddresses: ["::ffff:192.0.2.1"]\n',
      'test.yaml:6: nat6.publicAddresses.0: "::ffff:192.0.2.1" is an IPv4-mapped address (::ffff:0:0/96): nat6 takes IPv6 addresses; put IPv4 ones in nat.publicAddresses',
    ],
    [
      'a link-local address',
      '  publicAddresses: ["fe80::1"]\n',
      'test.yaml:6: nat6.publicAddresses.0: "fe80::1" lies in fe80::/10, link-local, never routed, and can never be a source address',
    ],
    [
      'an address twice',
      '  publicAddresses: [2001:db8::1, "2001:db8:0::1"]\n',
      'test.yaml:6: nat6.publicAddresses.1: "2001:db8:0::1" is listed twice: list each public address once',
    ],
    [
      'an invalid prefix',
      '  publicPrefix: 2001:db8:100::/200\n',
      'test.yaml:6: nat6.publicPrefix: "2001:db8:100::/200" is not an IPv6 prefix like 2001:db8:100::/64',
    ],
    [
      'an IPv4 prefix',
      '  publicPrefix: 192.0.2.0/24\n',
      'test.yaml:6: nat6.publicPrefix: "192.0.2.0/24" is IPv4: nat6 takes IPv6 prefixes like 2001:db8:100::/64; IPv4 belongs in nat.publicAddresses',
    ],
    [
      'host bits in a prefix',
      '  publicPrefix: 2001:db8:100::1/64\n',
      'test.yaml:6: nat6.publicPrefix: "2001:db8:100::1/64" has host bits set: write the prefix as 2001:db8:100::/64',
    ],
    [
      'both modes',
      '  publicAddresses: [2001:db8::1]\n  publicPrefix: 2001:db8:100::/64\n',
      'test.yaml:7: nat6.publicPrefix: and nat6.publicAddresses are both set: use port blocks (publicAddresses) or one address per client (publicPrefix), not both',
    ],
    [
      'port keys with a prefix',
      '  publicPrefix: 2001:db8:100::/64\n  portsPerClient: 64\n',
      'test.yaml:7: nat6.portsPerClient: does nothing with nat6.publicPrefix (every client has its own address, ports are not divided): remove it',
    ],
    [
      'an exclusion outside nat6.portRange',
      '  publicAddresses: [2001:db8::1]\n  portRange: 4000-5000\n  excludePorts: [80]\n',
      'test.yaml:8: nat6.excludePorts.0: 80-80 lies outside nat6.portRange 4000-5000, so excluding it does nothing',
    ],
    [
      'an unknown key',
      '  publicAdresses: [2001:db8::1]\n',
      'test.yaml:6: unknown key nat6.publicAdresses: remove it or check its spelling against config.example.yaml',
    ],
  ])('refuses %s in one sentence with key and line', (_, nat6, message) => {
    expect(messageOf(nat6)).toBe(message);
  });
});
