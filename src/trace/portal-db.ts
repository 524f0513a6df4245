/**
 * Who had a client address at a moment, from the eduVPN portal's `connection_log` (3.x
 * `/var/lib/vpn-user-portal/db.sqlite`, 2.x `/var/lib/vpn-server-api/db.sqlite`). The schema
 * is told apart by the table's columns. The database is the portal's: it is opened read-only
 * and must already exist, queried once per client, and closed right away, so the portal never
 * waits on us longer than one indexed read.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import type Database from 'better-sqlite3';
import {
  answerOf,
  doubtOf,
  sessionsAt,
  utcOf,
  type LogRow,
  type PortalSchema,
  type PortalSession,
  type UserAnswer,
} from './sessions.js';
import { parseIpv6 } from '../net/ipv6.js';
import { UTC_ZONE, type LocalZone } from './time.js';

export interface DatabaseRead {
  readonly path: string;
  readonly schema: PortalSchema | undefined;
  /** Why it was not used; undefined when it was read. */
  readonly problem: string | undefined;
}

/** A column as text; SQLite may hand back a number for a time stored as unix seconds. */
function text(value: unknown): string | null {
  if (typeof value === 'string') return value;
  return typeof value === 'number' || typeof value === 'bigint' ? value.toString() : null;
}

const QUERIES: Record<PortalSchema, string> = {
  '3.x': `SELECT user_id, profile_id, connection_id, vpn_proto, connected_at, disconnected_at
          FROM connection_log WHERE ip_four = ? ORDER BY connected_at`,
  '2.x': `SELECT user_id, profile_id, common_name AS connection_id, NULL AS vpn_proto,
          connected_at, disconnected_at FROM connection_log WHERE ip4 = ? ORDER BY connected_at`,
};

/**
 * An IPv6 client by the portal's IPv6 column (3.x `ip_six`, 2.x `ip6`), or by its IPv4 twin:
 * both addresses of a session are logged on one row. The portal writes IPv6 addresses as PHP's
 * inet_ntop prints them (RFC 5952 on glibc), the form formatIpv6 gives. The twin comes from
 * today's configuration, a hint only, so a row found by it counts only when its own IPv6
 * address is the client's (see sameIpv6).
 */
const QUERIES6: Record<PortalSchema, string> = {
  '3.x': `SELECT user_id, profile_id, connection_id, vpn_proto, connected_at, disconnected_at,
          ip_six AS address6 FROM connection_log WHERE ip_six = ? OR ip_four = ?
          ORDER BY connected_at`,
  '2.x': `SELECT user_id, profile_id, common_name AS connection_id, NULL AS vpn_proto,
          connected_at, disconnected_at, ip6 AS address6 FROM connection_log
          WHERE ip6 = ? OR ip4 = ? ORDER BY connected_at`,
};

/**
 * Whether a row's IPv6 column does not rule it out for `client`: the same address (in any
 * text form), or none that can be read. A row with the twin's IPv4 address and another IPv6
 * address was another client's session: today's pairing is not the one of that time (a range
 * renumbered since, or an OpenVPN that pooled IPv6 from network + 0x1000).
 */
function sameIpv6(row: Record<string, unknown>, client: bigint | undefined): boolean {
  const stored = text(row.address6);
  const address = stored === null ? undefined : parseIpv6(stored.trim());
  return address === undefined || client === undefined || address === client;
}

function schemaOf(columns: ReadonlySet<string>): PortalSchema | undefined {
  if (columns.has('ip_four') && columns.has('connected_at')) return '3.x';
  if (columns.has('ip4') && columns.has('common_name')) return '2.x';
  return undefined;
}

function logRowOf(row: Record<string, unknown>): LogRow {
  return {
    userId: text(row.user_id),
    profileId: text(row.profile_id),
    connectionId: text(row.connection_id),
    vpnProto: text(row.vpn_proto),
    connectedAt: text(row.connected_at) ?? '',
    disconnectedAt: text(row.disconnected_at),
  };
}

/**
 * better-sqlite3, loaded when a database file exists (issue 15: most traces of a node without
 * the portal, and every `--help`, need not load a native addon). Synchronous: it is CommonJS.
 */
function sqlite(): typeof Database {
  return createRequire(import.meta.url)('better-sqlite3') as typeof Database;
}

interface OpenDatabase {
  readonly read: DatabaseRead;
  readonly db: Database.Database | undefined;
}

function open(path: string): OpenDatabase {
  if (!existsSync(path))
    return { read: { path, schema: undefined, problem: 'does not exist' }, db: undefined };
  let db: Database.Database | undefined;
  try {
    const Sqlite = sqlite();
    db = new Sqlite(path, { readonly: true, fileMustExist: true, timeout: 2000 });
    const columns = db
      .prepare("SELECT name FROM pragma_table_info('connection_log')")
      .pluck()
      .all();
    const schema = schemaOf(new Set(columns.map(String)));
    if (!schema) {
      db.close();
      return {
        read: { path, schema, problem: 'has no eduVPN connection_log table' },
        db: undefined,
      };
    }
    return { read: { path, schema, problem: undefined }, db };
  } catch (error) {
    db?.close();
    // Not `instanceof Error`: better-sqlite3's errors may come from another realm (jest's VM).
    const message = (error as { message?: unknown } | null)?.message;
    const reason = typeof message === 'string' ? message : String(error);
    return {
      read: { path, schema: undefined, problem: `cannot be read (${reason})` },
      db: undefined,
    };
  }
}

export interface PortalDatabases {
  readonly databases: readonly DatabaseRead[];
  /**
   * The sessions of `client` (a dotted quad, or IPv6 text found by the IPv6 column or by its
   * IPv4 `twin`) around `at` (unix seconds).
   */
  sessionsOf(client: string, at: number, twin?: string): UserAnswer;
  close(): void;
}

export function openPortalDatabases(
  paths: readonly string[],
  zone: LocalZone,
  margin: number,
): PortalDatabases {
  const opened = [...new Set(paths)].map(open);
  const usable = opened.filter((database) => database.db !== undefined);
  const databases = opened.map((database) => database.read);
  const timesOf = (schema: PortalSchema) =>
    schema === '3.x' ? 'UTC' : `${zone.name} (assumed: eduVPN 2.x stores times without a zone)`;
  // 3.x writes every time in UTC (with +00:00), so one stored without an offset is UTC too,
  // as its session says; only 2.x times are the server's local ones.
  const zoneOf = (schema: PortalSchema) => (schema === '3.x' ? UTC_ZONE : zone);
  return {
    databases,
    sessionsOf(client, at, twin) {
      const ipv6 = client.includes(':');
      const sessions: PortalSession[] = [];
      const doubts = new Map<PortalSession, string>();
      const problems = opened
        .filter((database) => database.db === undefined)
        .map(({ read }) => `${read.path} ${read.problem ?? ''}`);
      let answered = 0;
      for (const { db, read } of usable) {
        const schema = read.schema ?? '3.x';
        let rows: LogRow[];
        try {
          const statement = db?.prepare((ipv6 ? QUERIES6 : QUERIES)[schema]);
          const found = ipv6 ? statement?.all(client, twin ?? null) : statement?.all(client);
          rows = ((found ?? []) as Record<string, unknown>[])
            .filter((row) => !ipv6 || sameIpv6(row, parseIpv6(client)))
            .map(logRowOf);
        } catch (error) {
          problems.push(`${read.path} cannot be read (${(error as Error).message})`);
          continue;
        }
        answered++;
        const stored = zoneOf(schema);
        for (const row of sessionsAt(rows, at, margin, stored)) {
          const session: PortalSession = {
            ...row,
            database: read.path,
            schema,
            connectedAtUtc: utcOf(row.connectedAt, stored),
            disconnectedAtUtc: utcOf(row.disconnectedAt, stored),
            timesAre: timesOf(schema),
          };
          sessions.push(session);
          const doubt = doubtOf(row, rows, at, margin, stored);
          if (doubt !== undefined) doubts.set(session, doubt);
        }
      }
      if (answered === 0) {
        return {
          status: 'unavailable',
          reason: `the user is unknown: ${problems.join('; ')}`,
          sessions,
        };
      }
      const named = twin === undefined ? client : `${client} (or ${twin})`;
      return answerOf(sessions, named, at, margin, doubts);
    },
    close() {
      for (const { db } of usable) db?.close();
    },
  };
}
