/**
 * What answering a trace needs besides the archives, opened once however many traces follow:
 * the portal databases (opened on the first client that needs a user, closed by `close`) and
 * today's client pools (read on the first client that needs a profile hint or an IPv4 twin).
 */
import type { Config } from '../config.js';
import { TnatError } from '../errors.js';
import { formatAddress, type Address } from '../net/address.js';
import { formatIpv4 } from '../net/ipv4.js';
import { openPortalDatabases, type PortalDatabases } from '../trace/portal-db.js';
import type { UserAnswer } from '../trace/sessions.js';
import type { IncidentTime, LocalZone } from '../trace/time.js';
import { SWITCH_MARGIN_SECONDS, type ArchiveDir } from '../trace/timeline.js';
import { asOwnAddress, mayBeOwnAddress, traceArchives } from '../trace/trace.js';
import { systemClock } from '../system/clock.js';
import type { TraceReport } from './trace-report.js';
import { clientFactsFinder } from './trace-sources.js';

export interface TraceRequest {
  readonly time: IncidentTime;
  /** Undefined only for an IPv6 address (prefix mode needs none). */
  readonly port: number | undefined;
  readonly address: Address | undefined;
  readonly proto: 'tcp' | 'udp' | undefined;
}

export interface TraceAnswerer {
  /** Throws a usage error (exit 2) when the port was left out where the address needs one. */
  answer(request: TraceRequest): TraceReport;
  close(): void;
}

export function traceAnswerer(
  config: Config,
  dirs: readonly ArchiveDir[],
  zone: LocalZone,
): TraceAnswerer {
  let databases: PortalDatabases | undefined;
  const factsOf = clientFactsFinder(config);
  const portal = () =>
    (databases ??= openPortalDatabases(
      [config.trace.portalDatabase, config.trace.serverApiDatabase],
      zone,
      SWITCH_MARGIN_SECONDS,
    ));
  const userOf = (client: Address, at: number, twin: number | undefined) =>
    portal().sessionsOf(
      formatAddress(client),
      at,
      twin === undefined ? undefined : formatIpv4(twin),
    );
  return {
    answer(request) {
      const { time, port, address, proto } = request;
      let result = traceArchives(dirs, {
        at: time.unixSeconds,
        port,
        address,
        proto,
        now: Math.floor(systemClock.now() / 1000),
      });
      const portNeeded = result.notes.find((note) => note.code === 'port-needed');
      if (portNeeded) throw new TnatError('E_USAGE', portNeeded.message);
      const users = new Map<Address, UserAnswer>();
      const profilesToday = new Map<Address, string>();
      const twins = new Map<Address, number>();
      // eduVPN without NAT66: a client's own global address leaves as it is (issue 14).
      if (typeof address === 'bigint' && mayBeOwnAddress(result)) {
        const { twin } = factsOf(address);
        const user = userOf(address, time.unixSeconds, twin);
        if (user.sessions.length > 0) result = asOwnAddress(result, address);
      }
      for (const { client } of result.candidates) {
        const { profile, twin } = factsOf(client);
        if (profile !== undefined) profilesToday.set(client, profile);
        if (twin !== undefined) twins.set(client, twin);
        users.set(client, userOf(client, time.unixSeconds, twin));
      }
      return { time, port, address, proto, result, users, profilesToday, twins };
    },
    close() {
      databases?.close();
    },
  };
}
