import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  linkSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jest } from '@jest/globals';
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

describe('paths that name the same file', () => {
  const firewall = (lines: string) => `${minimal}firewall:\n${lines}`;

  test.each([
    [
      'the IPv6 rules file is the IPv4 one',
      firewall('  rulesFile: /s/rules.v4\n  rulesFile6: /s/rules.v4\n'),
      'test.yaml:6: firewall.rulesFile6: "/s/rules.v4" is also firewall.rulesFile: give each its own path',
    ],
    [
      'the state file is the rules file',
      firewall('  rulesFile: /s/rules.v4\n  stateFile: /s/rules.v4\n'),
      'test.yaml:6: firewall.stateFile: "/s/rules.v4" is also firewall.rulesFile: give each its own path',
    ],
    [
      'the lock file is the default rules file, spelt otherwise',
      firewall('  lockFile: /etc/iptables/./rules.v4\n'),
      'test.yaml:5: firewall.lockFile: "/etc/iptables/./rules.v4" is also firewall.rulesFile: give each its own path',
    ],
    [
      'the lock file is the state file',
      firewall('  stateFile: /s/state\n  lockFile: /s/state\n'),
      'test.yaml:6: firewall.lockFile: "/s/state" is also firewall.stateFile: give each its own path',
    ],
    [
      'the archive directory is the rules file',
      firewall('  rulesFile: /s/rules\n  archiveDir: /s/rules/\n'),
      'test.yaml:6: firewall.archiveDir: "/s/rules/" is also firewall.rulesFile: give each its own path',
    ],
    [
      'the lock file is the plan cache beside the state file',
      firewall('  lockFile: /var/lib/traceable-nat/plan-cache.json\n'),
      'test.yaml:5: firewall.lockFile: "/var/lib/traceable-nat/plan-cache.json" is also the plan cache kept beside firewall.stateFile: give each its own path',
    ],
    [
      'the state file is its own plan cache',
      firewall('  stateFile: /s/plan-cache.json\n'),
      'test.yaml:5: firewall.stateFile: "/s/plan-cache.json" is also the plan cache kept beside firewall.stateFile: give each its own path',
    ],
    [
      'the rules file named as an archive',
      firewall('  rulesFile: /s/archive/rules.v4.1700000000\n  archiveDir: /s/archive\n'),
      'test.yaml:5: firewall.rulesFile: "/s/archive/rules.v4.1700000000" is named as an archive of firewall.archiveDir, and archives are never written over: give it another name',
    ],
  ])('refuses %s, naming both and the path', (_name, text, message) => {
    const error = errorOf(text);
    expect(error.code).toBe('E_CONFIG');
    expect(error.message).toBe(message);
  });

  test('the nftables backend has no IPv6 rules file of its own: rulesFile6 may be anything', () => {
    const config = parseConfig(
      firewall('  backend: nftables\n  rulesFile: /s/rules\n  rulesFile6: /s/rules\n'),
      'x.yaml',
    );
    expect(config.firewall.rulesFile).toBe('/s/rules');
  });
});

describe('paths that name the same file through a symbolic link', () => {
  let dir: string;
  beforeEach(() => {
    // Resolved itself, so that the messages' on-disk paths can be spelt out (tmpdir may be a link).
    dir = realpathSync(mkdtempSync(join(tmpdir(), 'tnat-config-')));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** A firewall section with every path in `dir`, so that no default path on the host is read. */
  const firewall = (paths: Record<string, string>) => {
    const all = {
      rulesFile: `${dir}/rules.v4`,
      rulesFile6: `${dir}/rules.v6`,
      stateFile: `${dir}/state.json`,
      lockFile: `${dir}/lock`,
      archiveDir: `${dir}/archive`,
      ...paths,
    };
    const lines = Object.entries(all).map(([key, path]) => `  ${key}: ${path}\n`);
    return `${minimal}firewall:\n${lines.join('')}`;
  };

  test('refuses an IPv6 rules file that links to the IPv4 one', () => {
    writeFileSync(join(dir, 'rules.v4'), '*filter\nCOMMIT\n');
    symlinkSync('rules.v4', join(dir, 'rules.v6'));
    const error = errorOf(firewall({}));
    expect(error.code).toBe('E_CONFIG');
    expect(error.message).toBe(
      `test.yaml:6: firewall.rulesFile6: "${dir}/rules.v6" is also firewall.rulesFile once symbolic links are followed (both are "${dir}/rules.v4"): give each its own file`,
    );
  });

  test('refuses an IPv6 rules file that is a hard link of the IPv4 one (it was accepted)', () => {
    writeFileSync(join(dir, 'rules.v4'), '*filter\nCOMMIT\n');
    linkSync(join(dir, 'rules.v4'), join(dir, 'rules.v6'));
    const error = errorOf(firewall({}));
    expect(error.code).toBe('E_CONFIG');
    expect(error.message).toBe(
      `test.yaml:6: firewall.rulesFile6: "${dir}/rules.v6" is also firewall.rulesFile through a hard link (one file with two names: an apply would read the one as the other): give each its own file`,
    );
    // Two files with the same text are two files.
    rmSync(join(dir, 'rules.v6'));
    writeFileSync(join(dir, 'rules.v6'), '*filter\nCOMMIT\n');
    expect(parseConfig(firewall({}), 'x.yaml').firewall.rulesFile6).toBe(`${dir}/rules.v6`);
  });

  test("accepts the original script's rules file, a link into the archive directory (an apply replaces the link)", () => {
    mkdirSync(join(dir, 'archive'));
    writeFileSync(join(dir, 'archive', 'rules.v4.1600000000'), '*nat\nCOMMIT\n');
    symlinkSync('archive/rules.v4.1600000000', join(dir, 'rules.v4'));
    expect(parseConfig(firewall({}), 'x.yaml').firewall.rulesFile).toBe(`${dir}/rules.v4`);
  });

  test('refuses a file not written yet in a linked directory that another path names directly', () => {
    mkdirSync(join(dir, 'real'));
    symlinkSync('real', join(dir, 'iptables'));
    const error = errorOf(
      firewall({ rulesFile: `${dir}/iptables/rules.v4`, stateFile: `${dir}/real/rules.v4` }),
    );
    expect(error.code).toBe('E_CONFIG');
    expect(error.message).toBe(
      `test.yaml:7: firewall.stateFile: "${dir}/real/rules.v4" is also firewall.rulesFile once symbolic links are followed (both are "${dir}/real/rules.v4"): give each its own file`,
    );
  });

  test('refuses a rules file named as an archive of an archive directory not made yet, reached through a linked parent', () => {
    mkdirSync(join(dir, 'real'));
    symlinkSync('real', join(dir, 'var'));
    const error = errorOf(
      firewall({
        rulesFile: `${dir}/real/archive/rules.v4.1700000000`,
        archiveDir: `${dir}/var/archive`,
      }),
    );
    expect(error.code).toBe('E_CONFIG');
    expect(error.message).toBe(
      `test.yaml:5: firewall.rulesFile: "${dir}/real/archive/rules.v4.1700000000" is an archive of firewall.archiveDir once symbolic links are followed ("${dir}/real/archive/rules.v4.1700000000"), and archives are never written over: give it a path that is no archive`,
    );
  });

  test('a link that loops is looked up by its parent, neither refused nor thrown', () => {
    symlinkSync('loop', join(dir, 'loop'));
    const config = parseConfig(firewall({ rulesFile: `${dir}/loop/rules.v4` }), 'x.yaml');
    expect(config.firewall.rulesFile).toBe(`${dir}/loop/rules.v4`);
  });

  test('accepts different files in a linked directory, named through the link and directly', () => {
    mkdirSync(join(dir, 'real'));
    symlinkSync('real', join(dir, 'iptables'));
    writeFileSync(join(dir, 'real', 'rules.v4'), '*filter\nCOMMIT\n');
    const config = parseConfig(
      firewall({
        rulesFile: `${dir}/iptables/rules.v4`,
        rulesFile6: `${dir}/real/rules.v6`,
        stateFile: `${dir}/real/state/state.json`,
        lockFile: `${dir}/iptables/lock`,
        archiveDir: `${dir}/iptables`,
      }),
      'x.yaml',
    );
    // The configuration keeps the paths as written: only the check looks through the link.
    expect(config.firewall.rulesFile).toBe(`${dir}/iptables/rules.v4`);
    expect(config.firewall.archiveDir).toBe(`${dir}/iptables`);
  });
});

describe('milliseconds that a Node timer can wait', () => {
  test.each([
    ['daemon.verifyIntervalMs', 'daemon:\n  verifyIntervalMs: 2147483648\n', 5],
    ['daemon.settleMs', 'daemon:\n  settleMs: 4294967296\n', 5],
    ['firewall.lockTimeoutMs', 'firewall:\n  lockTimeoutMs: 2147483648\n', 5],
  ])('%s above 2^31-1 is refused (Node would fire it after 1 ms)', (key, text, line) => {
    const error = errorOf(`${minimal}${text}`);
    expect(error.code).toBe('E_CONFIG');
    expect(error.message).toMatch(
      new RegExp(
        `^test\\.yaml:${line}: ${key.replace('.', '\\.')}: \\d+ is more than 2147483647 ms \\(about 24\\.8 days\\), the longest a timer waits: use a smaller whole number, like \\d+$`,
      ),
    );
  });

  test('2^31-1 itself is accepted', () => {
    const config = parseConfig(`${minimal}daemon:\n  verifyIntervalMs: 2147483647\n`, 'x.yaml');
    expect(config.daemon.verifyIntervalMs).toBe(2147483647);
  });
});

describe('YAML the configuration cannot take: one sentence with its place, nothing on stderr', () => {
  let warnings: jest.SpiedFunction<typeof process.emitWarning>;
  beforeEach(() => {
    warnings = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
  });
  afterEach(() => {
    const emitted = warnings.mock.calls.map(([warning]) => String(warning));
    warnings.mockRestore();
    expect(emitted).toEqual([]);
  });

  test.each([
    [
      'an alias without its anchor',
      `${minimal}daemon: *nope\n`,
      /^test\.yaml:4:9: unresolved alias \*nope: define the anchor &nope before it$/,
    ],
    [
      'an alias before its anchor',
      `${minimal}daemon: *later\ntrace: &later {}\n`,
      /^test\.yaml:4:9: unresolved alias \*later: define the anchor &later before it$/,
    ],
    [
      'an alias bomb',
      `a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n${minimal}`,
      /^test\.yaml: its aliases expand to too many values .*: write the values out/,
    ],
    [
      'a second document',
      `${minimal}---\ndaemon: {}\n`,
      /^test\.yaml:4:1: a second YAML document starts here: the configuration file must hold one document/,
    ],
    [
      'an unknown tag',
      `${minimal}daemon: !foo {settleMs: 5}\n`,
      /^test\.yaml:4:9: unknown tag !foo: remove it/,
    ],
    [
      '!!binary',
      `${minimal}daemon: !!binary aGVsbG8=\n`,
      /^test\.yaml:4:9: unknown tag !!binary: /,
    ],
    ['!!set', `${minimal}daemon: !!set {? settleMs}\n`, /^test\.yaml:4:9: unknown tag !!set: /],
    [
      '!!binary under %YAML 1.1',
      `%YAML 1.1\n---\n${minimal}daemon: !!binary aGVsbG8=\n`,
      /^test\.yaml:6:9: unknown tag !!binary: /,
    ],
    [
      'a list as a key',
      `${minimal}? [a, b]\n: 1\n`,
      /^test\.yaml:4:3: a list or mapping is used as a key: write each key as a plain name/,
    ],
  ])('%s', (_name, text, message) => {
    const error = errorOf(text);
    expect(error.code).toBe('E_CONFIG');
    expect(error.message).toMatch(message);
    expect(error.message).not.toMatch(/\n|readBig|parseAllDocuments/);
  });

  test('an alias with its anchor before it still works', () => {
    const config = parseConfig(
      `nat:\n  publicAddresses: [192.0.2.1]\n  outInterface: &out eth0\nnat6:\n  publicAddresses: ['2001:db8::1']\n  outInterface: *out\n`,
      'x.yaml',
    );
    expect(config.nat6?.outInterface).toBe('eth0');
  });
});
