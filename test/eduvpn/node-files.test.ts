import { posix } from 'node:path';
import {
  isOpenVpnServerFileName,
  parseNodeFiles,
  parseOpenVpnServerConfig,
  parseWireGuardConfig,
} from '../../src/eduvpn/node-files.js';
import {
  FIXTURES,
  SECRET_MARKER,
  fixture,
  lineOf,
  poolRow,
  sourceErrorOf,
} from './pool-helpers.js';

const OPENVPN_NAMES = ['internet-0', 'internet-1', 'office-0', 'office-1', 'office-2', 'office-3'];
/** In the order a directory listing gives them: office-3 before internet-0 on purpose. */
const openvpn = [...OPENVPN_NAMES].reverse().map((name) => ({
  file: posix.join(FIXTURES, `node/openvpn/server/${name}.conf`),
  text: fixture(`node/openvpn/server/${name}.conf`),
}));
const wireguard = {
  file: posix.join(FIXTURES, 'node/wireguard/wg0.conf'),
  text: fixture('node/wireguard/wg0.conf'),
};
const WG_PRIVATE_KEY = /PrivateKey = (\S+)/.exec(wireguard.text)?.[1] ?? 'missing';

function serverLine(name: string): number {
  return lineOf(fixture(`node/openvpn/server/${name}.conf`), 'server ');
}

describe('parseNodeFiles on generated OpenVPN and WireGuard files', () => {
  it('reads each process from its server line and wg0.conf from its Address entries', () => {
    const pools = parseNodeFiles({ openvpn, wireguard });
    const line = (name: string) => serverLine(name);
    expect(pools.map((pool) => poolRow(pool))).toEqual([
      `internet openvpn/0 node/openvpn/server/internet-0.conf:${line('internet-0')} 10.42.42.0/25 10.42.42.2-10.42.42.126 fd42:4242:4242:4242::/112`,
      `internet openvpn/1 node/openvpn/server/internet-1.conf:${line('internet-1')} 10.42.42.128/25 10.42.42.130-10.42.42.254 fd42:4242:4242:4242::1:0/112`,
      `office openvpn/0 node/openvpn/server/office-0.conf:${line('office-0')} 172.18.4.0/26 172.18.4.2-172.18.4.62 fd18:4::/112`,
      `office openvpn/1 node/openvpn/server/office-1.conf:${line('office-1')} 172.18.4.64/26 172.18.4.66-172.18.4.126 fd18:4::1:0/112`,
      `office openvpn/2 node/openvpn/server/office-2.conf:${line('office-2')} 172.18.4.128/26 172.18.4.130-172.18.4.190 fd18:4::2:0/112`,
      `office openvpn/3 node/openvpn/server/office-3.conf:${line('office-3')} 172.18.4.192/26 172.18.4.194-172.18.4.254 fd18:4::3:0/112`,
      'wireguard-0 wireguard node/wireguard/wg0.conf:4 10.43.43.0/24 10.43.43.2-10.43.43.254 fd43::/64',
      'wireguard-1 wireguard node/wireguard/wg0.conf:4 10.44.0.0/24 10.44.0.2-10.44.0.254 fd44::/64',
      'wireguard-2 wireguard node/wireguard/wg0.conf:5 172.18.0.0/23 172.18.0.2-172.18.1.254 fd18::/64',
    ]);
  });

  it('never puts a key or certificate into a pool', () => {
    const pools = parseNodeFiles({ openvpn, wireguard });
    expect(JSON.stringify(pools)).not.toMatch(SECRET_MARKER);
    expect(JSON.stringify(pools)).not.toContain(WG_PRIVATE_KEY);
  });

  it('names WireGuard pools after the ids the caller gives', () => {
    const pools = parseWireGuardConfig(wireguard.text, wireguard.file, [
      'internet',
      'research',
      'office',
    ]);
    expect(pools.map((pool) => pool.profileId)).toEqual(['internet', 'research', 'office']);
  });

  it('refuses a list of WireGuard ids that does not match the Address entries', () => {
    const error = sourceErrorOf(() =>
      parseWireGuardConfig(wireguard.text, wireguard.file, ['internet']),
    );
    expect(error.where).toEqual({ file: wireguard.file });
    expect(error.message).toMatch(
      /has 3 IPv4 Address entries but 1 WireGuard profile ids were given/,
    );
  });

  it.each([
    ['internet-0.conf', true],
    ['my-profile-12.conf', true],
    ['server.conf', false],
    ['internet-0.conf.bak', false],
    ['internet.conf', false],
  ])('treats %s as an eduVPN process file: %s', (name, expected) => {
    expect(isOpenVpnServerFileName(name)).toBe(expected);
  });

  it('takes the profile id from the file name when setenv PROFILE_ID is missing', () => {
    const pool = parseOpenVpnServerConfig(
      'server 10.1.0.0 255.255.255.0\n',
      '/etc/openvpn/server/lab-net-3.conf',
    );
    expect(poolRow(pool, '/etc/openvpn/server')).toBe(
      'lab-net openvpn/3 lab-net-3.conf:1 10.1.0.0/24 10.1.0.2-10.1.0.254 -',
    );
  });

  it('allows an empty wg0.conf (no WireGuard profile)', () => {
    expect(parseWireGuardConfig('[Interface]\nListenPort = 51820\n', 'wg0.conf')).toEqual([]);
  });

  it('ignores Address lines outside [Interface]', () => {
    const text =
      '[Interface]\nAddress = 10.5.0.1/24\n[Peer]\nAllowedIPs = 10.5.0.2/32\nAddress = 10.6.0.1/24\n';
    expect(parseWireGuardConfig(text, 'wg0.conf').map((pool) => poolRow(pool, ''))).toEqual([
      'wireguard-0 wireguard wg0.conf:2 10.5.0.0/24 10.5.0.2-10.5.0.254 -',
    ]);
  });
});

const PEM = [
  '<ca>',
  '-----BEGIN CERTIFICATE-----',
  'MIIBFAKE-SECRET-DO-NOT-LOG-ca0123456789abcdef',
  '-----END CERTIFICATE-----',
  '</ca>',
  '<key>',
  '-----BEGIN PRIVATE KEY-----',
  'server 10.99.0.0 255.255.255.0',
  'MIIEvFAKE-SECRET-DO-NOT-LOG-key0123456789abcdef',
  '-----END PRIVATE KEY-----',
  '</key>',
].join('\n');

describe('parseOpenVpnServerConfig refuses broken files without quoting their secrets', () => {
  it.each([
    {
      name: 'an inline block that is never closed',
      text: `setenv PROFILE_ID a\nserver 10.0.0.0 255.255.255.0\n<tls-crypt>\n#\nFAKE-SECRET-DO-NOT-LOG 0011aabb\n`,
      line: 3,
      message:
        /the inline <tls-crypt> block is never closed with <\/tls-crypt>, so the file is cut off: let eduVPN regenerate it/,
    },
    {
      name: 'no server line outside the blocks (one inside a block does not count)',
      text: `setenv PROFILE_ID a\n${PEM}\n`,
      line: undefined,
      message: /has no 'server NETWORK NETMASK' line/,
    },
    {
      name: 'a netmask with holes',
      text: `${PEM}\nserver 10.0.0.0 255.0.255.0\nsetenv PROFILE_ID a\n`,
      line: 12,
      message:
        /'server 10\.0\.0\.0 255\.0\.255\.0' is not a network and netmask like 'server 10\.0\.0\.0 255\.255\.255\.0'/,
    },
    {
      name: 'host bits set',
      text: `${PEM}\nserver 10.0.0.1 255.255.255.0\n`,
      line: 12,
      message:
        /the server range '10\.0\.0\.1\/24' has host bits set: write the network form 10\.0\.0\.0\/24/,
    },
    {
      name: 'a public range',
      text: `${PEM}\n\nserver 192.0.2.0 255.255.255.0\n`,
      line: 13,
      message: /the server range 192\.0\.2\.0\/24 is not a private range/,
    },
    {
      name: 'a range without room for a client',
      text: `server 10.0.0.0 255.255.255.254\n${PEM}\n`,
      line: 1,
      message: /10\.0\.0\.0\/31 is too small/,
    },
    {
      name: 'a profile id with a space',
      text: `server 10.0.0.0 255.255.255.0\nsetenv PROFILE_ID "a b"\n${PEM}\n`,
      line: 2,
      message: /profile id '"a' is not valid/,
    },
  ])('$name', ({ text, line, message }) => {
    const file = '/etc/openvpn/server/a-0.conf';
    const error = sourceErrorOf(() => parseOpenVpnServerConfig(text, file));
    expect(error.where).toEqual(line === undefined ? { file } : { file, line });
    expect(error.message).toMatch(message);
    expect(error.message).not.toMatch(SECRET_MARKER);
    expect(JSON.stringify(error)).not.toMatch(SECRET_MARKER);
  });

  it('reports two processes with overlapping ranges', () => {
    const files = [
      { file: '/etc/openvpn/server/a-0.conf', text: `server 10.0.0.0 255.255.255.0\n${PEM}\n` },
      { file: '/etc/openvpn/server/b-0.conf', text: `${PEM}\nserver 10.0.0.128 255.255.255.128\n` },
    ];
    const error = sourceErrorOf(() => parseNodeFiles({ openvpn: files }));
    expect(error.where).toEqual({ file: '/etc/openvpn/server/b-0.conf', line: 12 });
    expect(error.message).toBe(
      '/etc/openvpn/server/b-0.conf:12: client range 10.0.0.128/25 (OpenVPN process 0 of profile ' +
        "'b', /etc/openvpn/server/b-0.conf:12) overlaps 10.0.0.0/24 (OpenVPN process 0 of profile 'a', " +
        '/etc/openvpn/server/a-0.conf:1): give every profile its own range',
    );
  });
});

describe('parseWireGuardConfig refuses broken Address entries without quoting the key', () => {
  const key = 'PrivateKey = kFAKESECRETDONOTLOGzzzzzzzzzzzzzzzzzzzzzzzzz=';
  it.each([
    {
      name: 'not an address',
      address: '10.43.43/24',
      message: /Address entry '10\.43\.43\/24' is not an IPv4 or IPv6 address with a prefix/,
    },
    {
      name: 'no prefix',
      address: '10.43.43.1',
      message: /Address entry '10\.43\.43\.1' is not an IPv4 or IPv6 address with a prefix/,
    },
    {
      name: 'the network address',
      address: '10.43.43.0/24',
      message: /WireGuard Address 10\.43\.43\.0\/24 is not a host address/,
    },
    { name: 'the broadcast address', address: '10.43.43.255/24', message: /is not a host address/ },
    {
      name: 'a public range',
      address: '203.0.113.1/24',
      message: /203\.0\.113\.0\/24 is not a private range/,
    },
    { name: 'too small', address: '10.43.43.1/31', message: /10\.43\.43\.0\/31 is too small/ },
  ])('$name', ({ address, message }) => {
    const text = `[Interface]\n${key}\nMTU = 1392\nAddress = 10.1.0.1/24, ${address}, fd00::1/64\n`;
    const error = sourceErrorOf(() => parseWireGuardConfig(text, '/etc/wireguard/wg0.conf'));
    expect(error.where).toEqual({ file: '/etc/wireguard/wg0.conf', line: 4 });
    expect(error.message).toMatch(message);
    expect(JSON.stringify(error) + error.message).not.toMatch(SECRET_MARKER);
  });

  it('reports a WireGuard range that overlaps an OpenVPN process', () => {
    const error = sourceErrorOf(() =>
      parseNodeFiles({
        openvpn,
        wireguard: { file: 'wg0.conf', text: `[Interface]\n${key}\nAddress = 10.42.42.129/28\n` },
      }),
    );
    expect(error.where).toEqual({ file: 'wg0.conf', line: 3 });
    expect(error.message).toMatch(
      /client range 10\.42\.42\.128\/28 \(WireGuard of profile 'wireguard-0', wg0\.conf:3\) overlaps 10\.42\.42\.128\/25 \(OpenVPN process 1 of profile 'internet'/,
    );
    expect(error.message).not.toMatch(SECRET_MARKER);
  });
});
