import { posix } from 'node:path';
import { discoverPools } from '../../src/eduvpn/discover.js';
import { clientCount, type Discovery } from '../../src/eduvpn/pool.js';
import { formatCidr4 } from '../../src/net/ipv4.js';
import {
  EXAMPLES,
  FIXTURES,
  SECRET_MARKER,
  eduvpnSettings,
  fixture,
  loadTree,
  memoryReader,
  sourceErrorOf,
} from './pool-helpers.js';

const PORTAL = { '/etc/vpn-user-portal/config.php': fixture('portal-3x/config.php') };
const PROFILES = {
  '/etc/vpn-user-portal/profiles/internet.json': fixture('profiles/internet.json'),
  '/etc/vpn-user-portal/profiles/office.json': fixture('profiles/office.json'),
};
const OPENVPN = loadTree(posix.join(FIXTURES, 'node/openvpn/server'), '/etc/openvpn/server');
const WIREGUARD = { '/etc/wireguard/wg0.conf': fixture('node/wireguard/wg0.conf') };
const SERVER_API = { '/etc/vpn-server-api/config.php': fixture('server-api-2x/config.php') };
const SERVER_NODE = { '/etc/vpn-server-node/config.php': fixture('server-api-2x/node-config.php') };
const CONF_FILES = Object.keys(OPENVPN).sort();

function summary(discovery: Discovery): {
  source: string;
  files: readonly string[];
  pools: number;
} {
  return { source: discovery.source, files: discovery.files, pools: discovery.pools.length };
}

describe("discoverPools with source 'auto'", () => {
  it.each([
    {
      name: 'a 3.x single server: config.php',
      files: { ...PORTAL, ...OPENVPN, ...WIREGUARD },
      expected: { source: 'portal', files: ['/etc/vpn-user-portal/config.php'], pools: 9 },
    },
    {
      name: 'a 3.9.7+ portal: the profiles directory wins over config.php',
      files: { ...PORTAL, ...PROFILES },
      expected: {
        source: 'profiles',
        files: [
          '/etc/vpn-user-portal/profiles/internet.json',
          '/etc/vpn-user-portal/profiles/office.json',
        ],
        pools: 6,
      },
    },
    {
      name: 'a profiles directory without *.json files does not count',
      files: {
        ...PORTAL,
        '/etc/vpn-user-portal/profiles/README': 'x',
        '/etc/vpn-user-portal/profiles/old.json.bak': '{',
      },
      expected: { source: 'portal', files: ['/etc/vpn-user-portal/config.php'], pools: 9 },
    },
    {
      name: 'a 3.x node: its generated files, sorted, wg0.conf last',
      files: {
        ...OPENVPN,
        ...WIREGUARD,
        '/etc/vpn-server-node/config.php': "<?php return ['nodeNumber' => 1];",
      },
      expected: { source: 'node', files: [...CONF_FILES, '/etc/wireguard/wg0.conf'], pools: 9 },
    },
    {
      name: 'a 3.x node with WireGuard only',
      files: { ...WIREGUARD },
      expected: { source: 'node', files: ['/etc/wireguard/wg0.conf'], pools: 3 },
    },
    {
      name: 'a 2.x server with its node config',
      files: {
        ...SERVER_API,
        ...SERVER_NODE,
        '/etc/openvpn/server/custom.conf': 'server 8.8.8.0 255.255.255.0',
      },
      expected: {
        source: 'server-api',
        files: ['/etc/vpn-server-api/config.php', '/etc/vpn-server-node/config.php'],
        pools: 3,
      },
    },
    {
      name: 'a 2.x server without a node config',
      files: { ...SERVER_API },
      expected: { source: 'server-api', files: ['/etc/vpn-server-api/config.php'], pools: 7 },
    },
  ])('$name', ({ files, expected }) => {
    expect(summary(discoverPools(eduvpnSettings(), memoryReader(files)))).toEqual(expected);
  });

  it('names every place it looked when nothing is there', () => {
    const error = sourceErrorOf(() =>
      discoverPools(eduvpnSettings(), memoryReader({ '/etc/openvpn/server/': '' })),
    );
    expect(error.where).toBeUndefined();
    expect(error.message).toBe(
      'found no eduVPN configuration: none of /etc/vpn-user-portal/profiles/*.json, ' +
        '/etc/vpn-user-portal/config.php, /etc/openvpn/server/<profileId>-<n>.conf, ' +
        '/etc/wireguard/wg0.conf or /etc/vpn-server-api/config.php exists; set eduvpn.portalConfig ' +
        '(or the other eduvpn paths) to where the files are',
    );
  });

  it('passes the node number on (multi-node portal)', () => {
    const reader = memoryReader({
      '/etc/vpn-user-portal/config.php': fixture('portal-multinode/config.php'),
    });
    const discovery = discoverPools(eduvpnSettings({ nodeNumber: 2 }), reader);
    expect(discovery.pools.map((pool) => `${pool.profileId} ${formatCidr4(pool.subnet4)}`)).toEqual(
      ['office 10.7.192.0/24', 'guest 100.64.8.0/22'],
    );
  });
});

describe('discoverPools with an explicit source', () => {
  const everything = {
    ...PORTAL,
    ...PROFILES,
    ...OPENVPN,
    ...WIREGUARD,
    ...SERVER_API,
    ...SERVER_NODE,
  };

  it.each([
    ['portal', ['/etc/vpn-user-portal/config.php']],
    ['profiles', Object.keys(PROFILES)],
    ['node', [...CONF_FILES, '/etc/wireguard/wg0.conf']],
    ['server-api', ['/etc/vpn-server-api/config.php', '/etc/vpn-server-node/config.php']],
  ] as const)('%s reads only its own files', (source, files) => {
    const reader = memoryReader(everything);
    const discovery = discoverPools(eduvpnSettings({ source }), reader);
    expect(discovery.source).toBe(source);
    expect(discovery.files).toEqual(files);
    expect(reader.reads).toEqual(files);
  });

  it.each([
    [
      'portal',
      '/etc/vpn-user-portal/config.php',
      'does not exist, but eduvpn.source is portal: fix eduvpn.portalConfig or set eduvpn.source to auto',
    ],
    [
      'profiles',
      '/etc/vpn-user-portal/profiles',
      'holds no *.json profile files, but eduvpn.source is profiles: fix eduvpn.profilesDir or set eduvpn.source to auto',
    ],
    [
      'node',
      '/etc/openvpn/server',
      'holds no <profileId>-<n>.conf files and /etc/wireguard/wg0.conf does not exist, but eduvpn.source is node: fix eduvpn.openvpnDir (or eduvpn.wireguardConfig) or set eduvpn.source to auto',
    ],
    [
      'server-api',
      '/etc/vpn-server-api/config.php',
      'does not exist, but eduvpn.source is server-api: fix eduvpn.serverApiConfig or set eduvpn.source to auto',
    ],
  ] as const)('%s is an error when its files are missing', (source, file, sentence) => {
    // Files of every other source are there: an explicit source never falls back to them.
    const others = Object.fromEntries(
      Object.entries(everything).filter(([path]) => !path.startsWith(file)),
    );
    const withoutNode =
      source === 'node'
        ? Object.fromEntries(
            Object.entries(others).filter(([path]) => !path.startsWith('/etc/wireguard')),
          )
        : others;
    const error = sourceErrorOf(() =>
      discoverPools(eduvpnSettings({ source }), memoryReader(withoutNode)),
    );
    expect(error.where).toEqual({ file });
    expect(error.message).toBe(`${file}: ${sentence}`);
  });
});

describe('discoverPools on node files never leaks their secrets', () => {
  it('keeps keys and certificates out of the Discovery', () => {
    const discovery = discoverPools(
      eduvpnSettings({ source: 'node' }),
      memoryReader({ ...OPENVPN, ...WIREGUARD }),
    );
    expect(discovery.pools).toHaveLength(9);
    expect(JSON.stringify(discovery)).not.toMatch(SECRET_MARKER);
    expect(JSON.stringify(discovery)).not.toMatch(/PrivateKey|BEGIN/);
  });

  it('keeps them out of the error about a broken file', () => {
    const broken = (OPENVPN['/etc/openvpn/server/office-1.conf'] ?? '')
      .replace(/^server .*$/m, 'server 10.0.0.300 255.255.255.0')
      .replace('</key>', '');
    const reader = memoryReader({
      ...OPENVPN,
      '/etc/openvpn/server/office-1.conf': broken,
      ...WIREGUARD,
    });
    const error = sourceErrorOf(() => discoverPools(eduvpnSettings(), reader));
    expect(error.where?.file).toBe('/etc/openvpn/server/office-1.conf');
    expect(error.message).toMatch(/inline <key> block is never closed/);
    expect(`${error.message} ${JSON.stringify(error)}`).not.toMatch(SECRET_MARKER);
  });
});

describe('the bundled example under examples/etc', () => {
  const tree = loadTree(posix.join(EXAMPLES, 'etc'), '/etc');

  it('is a 3.x single server whose node files match its portal config', () => {
    const portal = discoverPools(eduvpnSettings(), memoryReader(tree));
    const node = discoverPools(eduvpnSettings({ source: 'node' }), memoryReader(tree));
    expect(portal.source).toBe('portal');
    const ranges = (discovery: Discovery) =>
      discovery.pools
        .map(
          (pool) =>
            `${pool.protocol} ${pool.origin.process ?? '-'} ${formatCidr4(pool.subnet4)} ${pool.subnet6 ?? '-'}`,
        )
        .sort();
    expect(ranges(node)).toEqual(ranges(portal));
    expect(portal.pools.reduce((sum, pool) => sum + clientCount(pool), 0)).toBe(872);
  });
});
