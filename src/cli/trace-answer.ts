/**
 * What answering a trace needs besides the archives, opened once however many traces follow:
 * the portal databases (opened on the first client that needs a user, closed by `close`) and
 * today's client pools (read on the first client that needs a profile hint).
 */
import type { Config } from '../config.js';
import { formatIpv4 } from '../net/ipv4.js';
import { openPortalDatabases, type PortalDatabases } from '../trace/portal-db.js';
import type { UserAnswer } from '../trace/sessions.js';
import type { IncidentTime, LocalZone } from '../trace/time.js';
import { SWITCH_MARGIN_SECONDS, type ArchiveDir } from '../trace/timeline.js';
import { traceArchives } from '../trace/trace.js';
import { systemClock } from '../system/clock.js';
import type { TraceReport } from './trace-report.js';
import { profileFinder } from './trace-sources.js';

export interface TraceRequest {
  readonly time: IncidentTime;
  readonly port: number;
  readonly address: number | undefined;
  readonly proto: 'tcp' | 'udp' | undefined;
}

export interface TraceAnswerer {
  answer(request: TraceRequest): TraceReport;
  close(): void;
}

export function traceAnswerer(
  config: Config,
  dirs: readonly ArchiveDir[],
  zone: LocalZone,
): TraceAnswerer {
  let databases: PortalDatabases | undefined;
  const profileOf = profileFinder(config);
  return {
    answer(request) {
      const { time, port, address, proto } = request;
      const result = traceArchives(dirs, {
        at: time.unixSeconds,
        port,
        address,
        proto,
        now: Math.floor(systemClock.now() / 1000),
      });
      const users = new Map<number, UserAnswer>();
      const profilesToday = new Map<number, string>();
      for (const { client } of result.candidates) {
        databases ??= openPortalDatabases(
          [config.trace.portalDatabase, config.trace.serverApiDatabase],
          zone,
          SWITCH_MARGIN_SECONDS,
        );
        users.set(client, databases.sessionsOf(formatIpv4(client), time.unixSeconds));
        const profile = profileOf(client);
        if (profile !== undefined) profilesToday.set(client, profile);
      }
      return { time, port, address, proto, result, users, profilesToday };
    },
    close() {
      databases?.close();
    },
  };
}
