import { isRelevant, planWatches, type Probe } from '../../src/daemon/watch-plan.js';

/** A file system of directories only, each with a made-up identity. */
function directories(...dirs: string[]): Probe {
  return (path) =>
    dirs.includes(path) ? { kind: 'directory', identity: `id:${path}` } : { kind: 'missing' };
}

const PORTAL = '/etc/vpn-user-portal/config.php';
const PROFILES = '/etc/vpn-user-portal/profiles';
const OPENVPN = '/etc/openvpn/server';

describe('planWatches', () => {
  test.each([
    {
      what: 'a file through its directory, a directory through itself and its parent',
      existing: ['/', '/etc', '/etc/vpn-user-portal', '/etc/vpn-user-portal/profiles'],
      targets: [PORTAL, PROFILES],
      watched: ['/etc/vpn-user-portal', '/etc/vpn-user-portal/profiles'],
    },
    {
      what: 'a missing directory through its nearest existing ancestor',
      existing: ['/', '/etc'],
      targets: [OPENVPN],
      watched: ['/etc'],
    },
    {
      what: 'a directory that is missing only itself: through its parent',
      existing: ['/', '/etc', '/etc/openvpn'],
      targets: [OPENVPN],
      watched: ['/etc/openvpn'],
    },
    {
      what: 'shared directories once',
      existing: ['/', '/etc', '/etc/vpn-user-portal'],
      targets: [PORTAL, PROFILES, '/etc/vpn-user-portal/other.php'],
      watched: ['/etc/vpn-user-portal'],
    },
  ])('$what', ({ existing, targets, watched }) => {
    expect([...planWatches(targets, directories(...existing)).keys()].sort()).toEqual(watched);
  });

  test('records the identity each directory had, so a replaced one is watched anew', () => {
    const plan = planWatches([PORTAL], directories('/', '/etc', '/etc/vpn-user-portal'));
    expect(plan.get('/etc/vpn-user-portal')).toBe('id:/etc/vpn-user-portal');
  });
});

describe('isRelevant', () => {
  const targets = [PORTAL, PROFILES, OPENVPN];
  test.each([
    ['/etc/vpn-user-portal', 'config.php', true],
    ['/etc/vpn-user-portal', 'config.php.tmp', false],
    ['/etc/vpn-user-portal', 'notes.txt', false],
    ['/etc/vpn-user-portal', 'profiles', true],
    ['/etc/vpn-user-portal/profiles', 'anything.json', true],
    ['/etc/openvpn/server', 'default-0.conf.tmp', true],
    ['/etc', 'openvpn', true],
    ['/etc', 'vpn-user-portal', true],
    ['/etc', 'passwd', false],
    ['/etc/openvpn', 'client', false],
    // The watched directory's own deletion or move, and an event without a name.
    ['/etc/vpn-user-portal', 'vpn-user-portal', true],
    ['/etc', null, true],
  ])('%s: %s -> %s', (dir, name, relevant) => {
    expect(isRelevant(dir, name, targets)).toBe(relevant);
  });
});
