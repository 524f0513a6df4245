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

  test.each([
    ['0.0.0.0', /0\.0\.0\.0\/8, "this network"/],
    ['0.1.2.3', /0\.0\.0\.0\/8/],
    ['127.0.0.1', /127\.0\.0\.0\/8, loopback/],
    ['224.0.0.1', /224\.0\.0\.0\/4, multicast/],
    ['239.255.255.250', /multicast/],
    ['240.0.0.1', /240\.0\.0\.0\/4, reserved/],
    ['255.255.255.255', /240\.0\.0\.0\/4, reserved, and holds the broadcast address/],
  ])('refuses %s as a public address, saying why and what to use', (address, why) => {
    const error = errorOf(`nat:\n  publicAddresses:\n    - ${address}\n  outInterface: eth0\n`);
    expect(error.code).toBe('E_CONFIG');
    expect(error.message).toMatch(
      new RegExp(
        `^test\\.yaml:3: nat\\.publicAddresses\\.0: "${address.replaceAll('.', '\\.')}" lies in `,
      ),
    );
    expect(error.message).toMatch(why);
    expect(error.message).toMatch(
      /can never be a source address: use this server's own public IPv4 address/,
    );
  });

  test('refuses a public address listed twice', () => {
    const error = errorOf(
      'nat:\n  publicAddresses:\n    - 192.0.2.1\n    - 192.0.2.7\n    - 192.0.2.1\n  outInterface: eth0\n',
    );
    expect(error.message).toBe(
      'test.yaml:5: nat.publicAddresses.2: "192.0.2.1" is listed twice: list each public address once',
    );
  });

  test('accepts ordinary public and documentation addresses', () => {
    const config = parseConfig(
      'nat:\n  publicAddresses: [192.0.2.1, 198.51.100.1, 1.0.0.1, 223.255.255.254]\n  outInterface: eth0\n',
      'x.yaml',
    );
    expect(config.nat.publicAddresses).toHaveLength(4);
  });

  /** Every key of the schema with a wrong value: the message says what was expected. */
  test.each([
    ['eduvpn', '5', /^5 is not a mapping of eduvpn keys/],
    ['eduvpn.source', 'nope', /"nope" is not an eduVPN source: use auto, portal, profiles/],
    ['eduvpn.portalConfig', '5', /5 is not a file or directory path/],
    ['eduvpn.profilesDir', '""', /is empty: give a file or directory path/],
    ['eduvpn.serverApiConfig', '[]', /a list is not a file or directory path/],
    ['eduvpn.nodeConfig', '{a: 1}', /a mapping is not a file or directory path/],
    ['eduvpn.openvpnDir', 'true', /true is not a file or directory path/],
    ['eduvpn.wireguardConfig', 'null', /null is not a file or directory path/],
    ['eduvpn.nodeNumber', '-1', /-1 is not a node number: use 0 on a single server/],
    ['nat', 'x', /^"x" is not a mapping of nat keys/],
    ['nat.publicAddresses', '192.0.2.1', /"192\.0\.2\.1" is not a list of IPv4 addresses like/],
    ['nat.publicAddresses', '[7]', /^7 is not an IPv4 address/],
    ['nat.publicAddresses', '[]', /needs at least one public IPv4 address/],
    ['nat.outInterface', '7', /7 is not a network interface name such as eth0/],
    [
      'nat.outInterface',
      'averyveryverylongname0',
      /is not a network interface name .*15 characters/,
    ],
    ['nat.portRange', 'a', /"a" is not a port or port range like 1024-65535/],
    ['nat.portRange', '[1, 2]', /a list is not a port or port range like 1024-65535/],
    ['nat.excludePorts', 'x', /"x" is not a list of ports or ranges like \[8080, 9000-9100\]/],
    ['nat.excludePorts', '[true]', /^true is not a port or port range/],
    [
      'nat.portsPerClient',
      'lots',
      /"lots" is not a number of ports: use auto or a power of two like 64/,
    ],
    ['nat.portsPerClient', '2.5', /2\.5 is not a number of ports: use auto or a power of two/],
    [
      'nat.portsPerClient',
      '65536',
      /65536 is not a number of ports: use a power of two from 1 to 32768/,
    ],
    [
      'nat.minPortsPerClient',
      'some',
      /"some" is not a number of ports: use a power of two like 64/,
    ],
    ['nat.minPortsPerClient', '0', /0 is not a number of ports: use a power of two from 1/],
    ['firewall', '3', /^3 is not a mapping of firewall keys/],
    ['firewall.backend', 'pf', /"pf" is not a backend: use iptables or nftables/],
    ['firewall.rulesFile', '3', /3 is not a file or directory path/],
    ['firewall.archiveDir', '""', /is empty: give a file or directory path/],
    ['firewall.lockFile', '[]', /a list is not a file or directory path/],
    [
      'firewall.lockTimeoutMs',
      'soon',
      /"soon" is not a number of milliseconds: use a whole number of at least 0/,
    ],
    [
      'firewall.iptables',
      'nft',
      /"nft" is not an iptables variant: use iptables or iptables-legacy/,
    ],
    ['firewall.nftTable', 'A-B', /"A-B" is not an nftables table name like traceable_nat/],
    ['firewall.afterWrite', '5', /5 is not a shell command: give one, or null for none/],
    ['firewall.afterWrite', '""', /is empty: give a shell command, or null for none/],
    ['firewall.flushConntrack', 'maybe', /"maybe" is not true or false/],
    ['firewall.removalGuard', 'off', /"off" is not true or false/],
    ['firewall.stateFile', '7', /7 is not a file or directory path/],
    ['daemon', '[]', /^a list is not a mapping of daemon keys/],
    [
      'daemon.settleMs',
      '-5',
      /-5 is not a number of milliseconds: use a whole number of at least 0/,
    ],
    [
      'daemon.verifyIntervalMs',
      '10',
      /10 is not a number of milliseconds: use a whole number of at least 1000/,
    ],
    ['trace', 'x', /^"x" is not a mapping of trace keys/],
    ['trace.portalDatabase', '[]', /a list is not a file or directory path/],
    ['trace.serverApiDatabase', '1', /1 is not a file or directory path/],
    ['trace.archiveDirs', 'x', /"x" is not a list of directories like/],
    ['trace.archiveDirs', '[""]', /^is empty/],
  ])('%s: %s says what is expected', (key, value, message) => {
    const [sectionName = '', name] = key.split('.');
    const sections: Record<string, string[]> = {
      nat: ['  publicAddresses: [192.0.2.1]', '  outInterface: eth0'],
    };
    if (name === undefined) sections[sectionName] = [];
    else {
      const lines = (sections[sectionName] ?? []).filter((line) => !line.startsWith(`  ${name}:`));
      sections[sectionName] = [...lines, `  ${name}: ${value}`];
    }
    const text = Object.entries(sections)
      .map(([head, lines]) =>
        name === undefined && head === sectionName
          ? `${head}: ${value}`
          : [`${head}:`, ...lines].join('\n'),
      )
      .join('\n');
    const error = errorOf(`${text}\n`);
    expect(error.code).toBe('E_CONFIG');
    // One problem, on the key's own line, with no zod wording.
    const problem = error.message.replace(/^test\.yaml:\d+: /, '');
    expect(problem.startsWith(key)).toBe(true);
    expect(problem.slice(problem.indexOf(': ') + 2)).toMatch(message);
    expect(error.message).not.toMatch(
      /Invalid input|Too small|Too big|expected (string|number|int)|problems/,
    );
  });
});
