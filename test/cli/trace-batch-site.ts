/**
 * A node for batch trace tests: five archives (blocks move between clients at every switch, a
 * second public address from the third on), a 3.x portal database, and a configuration naming
 * them, all in a temp dir. `run` calls the CLI in-process.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import type { CliIo } from '../../src/cli/io.js';
import { main } from '../../src/cli/main.js';
import { archiveFiles, type ArchiveSpec, type Row } from '../trace/archive-fixtures.js';

export const A = '192.0.2.1';
export const B = '192.0.2.9';
/** Not ours in any archive. */
export const C = '198.51.100.7';
/** 2023-09-20T08:00:00Z; the archives follow every 10 minutes. */
export const T0 = 1695196800;
export const SWITCHES = [T0, T0 + 600, T0 + 1200, T0 + 1800, T0 + 2400];
export const FIRST_PORT = 65024;
export const BLOCKS = 8;
export const BLOCK_SIZE = 64;

/** Archive k: block i of A belongs to client 10.42.0.(2 + (i + k) % 10); from k = 2, B too. */
function rowsOf(k: number): Row[] {
  const rows: Row[] = [];
  for (let i = 0; i < BLOCKS; i++) {
    const first = FIRST_PORT + i * BLOCK_SIZE;
    rows.push([`10.42.0.${2 + ((i + k) % 10)}`, A, first, first + BLOCK_SIZE - 1]);
    if (k >= 2 && i < 3)
      rows.push([`10.42.1.${2 + ((i + k) % 5)}`, B, first, first + BLOCK_SIZE - 1]);
  }
  return rows;
}

export const SPECS: ArchiveSpec[] = SWITCHES.map((at, k) => ({
  at,
  form: 'iptables',
  took: 1 + (k % 3),
  rows: rowsOf(k),
}));

export interface Run {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface Site {
  readonly dir: string;
  readonly archiveDir: string;
  readonly config: string;
  run(env: Record<string, string>, ...args: string[]): Promise<Run>;
  remove(): void;
}

function writeDatabase(file: string): void {
  const db = new Database(file);
  try {
    db.exec(`CREATE TABLE connection_log (user_id TEXT NOT NULL, profile_id TEXT NOT NULL,
      vpn_proto TEXT NOT NULL, connection_id TEXT NOT NULL, ip_four TEXT NOT NULL,
      ip_six TEXT NOT NULL, connected_at TEXT NOT NULL, bytes_in INTEGER, bytes_out INTEGER,
      disconnected_at TEXT)`);
    const insert = db.prepare(`INSERT INTO connection_log (user_id, profile_id, vpn_proto,
      connection_id, ip_four, ip_six, connected_at, disconnected_at)
      VALUES (?, ?, 'wireguard', ?, ?, 'fd42::2', ?, ?)`);
    const iso = (seconds: number) =>
      new Date(seconds * 1000).toISOString().replace('.000Z', '+00:00');
    // Users come and go every 15 minutes on half of the clients: found, none and ambiguous users.
    for (let n = 2; n < 12; n += 2) {
      insert.run(`user${n}`, 'internet', `c${n}`, `10.42.0.${n}`, iso(T0 - 60), iso(T0 + 900));
      insert.run(`late${n}`, 'research', `d${n}`, `10.42.0.${n}`, iso(T0 + 900), null);
    }
    insert.run('bee', 'guests', 'b1', '10.42.1.3', iso(T0), null);
  } finally {
    db.close();
  }
}

export function createSite(prefix: string): Site {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const archiveDir = join(dir, 'archive');
  mkdirSync(archiveDir);
  for (const [name, text] of archiveFiles(SPECS)) writeFileSync(join(archiveDir, name), text);
  writeDatabase(join(dir, 'db.sqlite'));
  const config = join(dir, 'config.yaml');
  writeFileSync(
    config,
    [
      'eduvpn:',
      '  source: portal',
      `  portalConfig: ${resolve('examples/etc/vpn-user-portal/config.php')}`,
      'nat:',
      `  publicAddresses: [${A}]`,
      '  outInterface: eth0',
      'firewall:',
      `  rulesFile: ${join(dir, 'rules.v4')}`,
      `  archiveDir: ${archiveDir}`,
      'trace:',
      `  portalDatabase: ${join(dir, 'db.sqlite')}`,
      `  serverApiDatabase: ${join(dir, 'no-2x.sqlite')}`,
      '',
    ].join('\n'),
  );
  return {
    dir,
    archiveDir,
    config,
    async run(env, ...args) {
      let stdout = '';
      let stderr = '';
      const io: CliIo = {
        stdout: (text) => (stdout += text),
        stderr: (text) => (stderr += text),
        env,
      };
      const status = await main(args, io);
      return { status, stdout, stderr };
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
