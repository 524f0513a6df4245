/**
 * The real watcher on real files: replacements by rename (how editors, configuration tools and
 * vpn-maint-apply-changes write), directories deleted and created again, paths that appear
 * later. Every wait is bounded; each test works in its own temporary directory.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { watchSources, type SourceWatcher } from '../../src/daemon/watch.js';

/** How long a change may take to be reported: inotify delivers within milliseconds. */
const HEARD_MS = 2000;

interface Heard {
  readonly paths: string[];
  readonly errors: unknown[];
  /** Resolves when a change is reported after the first `from` ones; rejects after HEARD_MS. */
  next(from: number): Promise<string>;
}

interface Listener extends Heard {
  readonly onChange: (path: string) => void;
  readonly onError: (error: unknown) => void;
}

function listen(): Listener {
  const paths: string[] = [];
  const errors: unknown[] = [];
  return {
    paths,
    errors,
    onChange: (path) => {
      paths.push(path);
    },
    onError: (error) => {
      errors.push(error);
    },
    async next(from) {
      for (let waited = 0; waited < HEARD_MS; waited += 10) {
        const path = paths[from];
        if (path !== undefined) return path;
        await sleep(10);
      }
      throw new Error(`no change reported within ${HEARD_MS} ms (${paths.length} so far)`);
    },
  };
}

/** The way editors and `sed ... > f.tmp; mv f.tmp f` write: a new inode under the old name. */
function replaceByRename(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

/** Reports a change, and keeps reporting: a second change after the first is heard too. */
async function expectHeardTwice(heard: Heard, change: () => void, again: () => void) {
  let from = heard.paths.length;
  change();
  await heard.next(from);
  await sleep(50);
  from = heard.paths.length;
  again();
  await heard.next(from);
}

describe('watchSources', () => {
  let root: string;
  let watcher: SourceWatcher | undefined;
  let heard: Listener;
  let portal: string;
  let portalConfig: string;
  let openvpnDir: string;

  const start = (paths: readonly string[]) => {
    heard = listen();
    watcher = watchSources(paths, heard.onChange, heard.onError);
  };

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'tnat-watch-'));
    portal = join(root, 'etc', 'vpn-user-portal');
    portalConfig = join(portal, 'config.php');
    openvpnDir = join(root, 'etc', 'openvpn', 'server');
    mkdirSync(portal, { recursive: true });
    mkdirSync(openvpnDir, { recursive: true });
    writeFileSync(portalConfig, 'version 0');
  });

  afterEach(async () => {
    await watcher?.close();
    watcher = undefined;
    rmSync(root, { recursive: true, force: true });
  });

  test('the last of a burst of fifty replacements by rename is heard, and one more after it', async () => {
    start([portalConfig, openvpnDir]);
    for (let i = 1; i < 50; i++) {
      replaceByRename(portalConfig, `version ${i}`);
      // Let the watcher run between replacements, as it does while a shell loop forks sed.
      await sleep(2);
    }
    const beforeLast = heard.paths.length;
    replaceByRename(portalConfig, 'version 50');
    expect(await heard.next(beforeLast)).toBe(portalConfig);
    await sleep(300);
    const from = heard.paths.length;
    replaceByRename(portalConfig, 'version 51');
    expect(await heard.next(from)).toBe(portalConfig);
    expect(heard.errors).toEqual([]);
  });

  test('a watched directory deleted and created again is watched again', async () => {
    start([portalConfig, openvpnDir]);
    writeFileSync(join(openvpnDir, 'default-0.conf'), 'server 10.42.1.0 255.255.255.0');
    let from = heard.paths.length;
    rmSync(openvpnDir, { recursive: true });
    await heard.next(from);
    await expectHeardTwice(
      heard,
      () => {
        mkdirSync(openvpnDir);
        writeFileSync(join(openvpnDir, 'default-0.conf'), 'server 10.42.9.0 255.255.255.0');
      },
      () => {
        replaceByRename(join(openvpnDir, 'default-0.conf'), 'server 10.42.8.0 255.255.255.0');
      },
    );
    from = heard.paths.length;
    writeFileSync(join(openvpnDir, 'default-1.conf'), 'server 10.42.7.0 255.255.255.0');
    await heard.next(from);
  });

  test('the directory of a watched file deleted and created again is watched again', async () => {
    start([portalConfig, openvpnDir]);
    const from = heard.paths.length;
    rmSync(portal, { recursive: true });
    await heard.next(from);
    await expectHeardTwice(
      heard,
      () => {
        mkdirSync(portal);
        writeFileSync(portalConfig, 'recreated');
      },
      () => {
        replaceByRename(portalConfig, 'edited after');
      },
    );
  });

  test('an ancestor deleted and created again: the watch climbs back down', async () => {
    start([portalConfig, openvpnDir]);
    const from = heard.paths.length;
    rmSync(join(root, 'etc'), { recursive: true });
    await heard.next(from);
    await sleep(50);
    await expectHeardTwice(
      heard,
      () => {
        mkdirSync(openvpnDir, { recursive: true });
        mkdirSync(portal, { recursive: true });
        writeFileSync(portalConfig, 'restored');
      },
      () => {
        writeFileSync(join(openvpnDir, 'default-0.conf'), 'server 10.42.9.0 255.255.255.0');
      },
    );
    const again = heard.paths.length;
    replaceByRename(portalConfig, 'edited after');
    expect(await heard.next(again)).toBe(portalConfig);
  });

  test('a path that does not exist yet is heard when it appears, and afterwards', async () => {
    const wireguardConfig = join(root, 'later', 'wireguard', 'wg0.conf');
    start([portalConfig, wireguardConfig]);
    await expectHeardTwice(
      heard,
      () => {
        mkdirSync(join(root, 'later', 'wireguard'), { recursive: true });
        writeFileSync(wireguardConfig, '[Interface]');
      },
      () => {
        replaceByRename(wireguardConfig, '[Interface]\nAddress = 10.42.0.1/24');
      },
    );
  });

  test('a directory on the way replaced by a file, then by a directory again: no throw, heard again (found by an audit)', async () => {
    // stat(2) of a path through a file fails with ENOTDIR, not ENOENT: it threw out of the
    // watch's callback, an uncaught exception that ended the daemon.
    const openvpn = join(root, 'etc', 'openvpn');
    start([portalConfig, openvpnDir]);
    let from = heard.paths.length;
    rmSync(openvpn, { recursive: true });
    writeFileSync(openvpn, 'not a directory');
    await heard.next(from);
    await sleep(50);
    rmSync(openvpn);
    await expectHeardTwice(
      heard,
      () => {
        mkdirSync(openvpnDir, { recursive: true });
      },
      () => {
        writeFileSync(join(openvpnDir, 'default-0.conf'), 'server 10.42.9.0 255.255.255.0');
      },
    );
    from = heard.paths.length;
    replaceByRename(portalConfig, 'edited after');
    expect(await heard.next(from)).toBe(portalConfig);
    expect(heard.errors).toEqual([]);
  });

  test('a watched directory replaced by a symbolic link that loops: no throw, heard again when repaired (found by an audit)', async () => {
    // ELOOP, like ENOTDIR, is a path that is no directory now; at start it threw from
    // watchSources, so the daemon did not start.
    rmSync(openvpnDir, { recursive: true });
    symlinkSync('server', openvpnDir);
    start([portalConfig, openvpnDir]);
    await expectHeardTwice(
      heard,
      () => {
        rmSync(openvpnDir);
        mkdirSync(openvpnDir);
      },
      () => {
        writeFileSync(join(openvpnDir, 'default-0.conf'), 'server 10.42.9.0 255.255.255.0');
      },
    );
    expect(heard.errors).toEqual([]);
  });

  test('other files beside a watched file are not changes', async () => {
    start([portalConfig, openvpnDir]);
    writeFileSync(join(portal, 'notes.txt'), 'unrelated');
    writeFileSync(`${portalConfig}.tmp`, 'half written');
    await sleep(300);
    expect(heard.paths).toEqual([]);
  });

  test('nothing is reported after close', async () => {
    start([portalConfig, openvpnDir]);
    await watcher?.close();
    replaceByRename(portalConfig, 'after close');
    rmSync(openvpnDir, { recursive: true });
    await sleep(300);
    expect(heard.paths).toEqual([]);
  });
});
