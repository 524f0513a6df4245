/**
 * `traceable-nat trace --at TIME --port PORT [--address PUBLIC] [--proto tcp|udp]`: from an
 * abuse report's (time, public address, source port) to the client address, from the rulesets
 * archived for that moment, and to the eduVPN user from the portal's connection log.
 */
import { TnatError } from '../errors.js';
import { formatIpv4 } from '../net/ipv4.js';
import { openPortalDatabases } from '../trace/portal-db.js';
import type { UserAnswer } from '../trace/sessions.js';
import { systemClock } from '../system/clock.js';
import { SWITCH_MARGIN_SECONDS } from '../trace/timeline.js';
import { traceArchives } from '../trace/trace.js';
import type { Command, OptionValues } from './command.js';
import {
  EXIT_FOR_STATUS,
  overallStatus,
  traceJson,
  traceText,
  type TraceReport,
} from './trace-report.js';
import {
  addressOption,
  ARCHIVE_DIR_OPTION,
  archiveDirsFor,
  incidentTimeOf,
  profilesToday,
  zoneFor,
} from './trace-sources.js';

function portOption(options: OptionValues): number {
  const text = options.port;
  if (typeof text !== 'string')
    throw new TnatError('E_USAGE', 'give the source port with --port PORT');
  const port = Number(text);
  if (!/^\d{1,5}$/.test(text) || port < 1 || port > 65535) {
    throw new TnatError('E_USAGE', `--port "${text}" is not a port number from 1 to 65535`);
  }
  return port;
}

function protoOption(options: OptionValues): 'tcp' | 'udp' | undefined {
  const proto = options.proto;
  if (proto === undefined) return undefined;
  if (proto === 'tcp' || proto === 'udp') return proto;
  throw new TnatError('E_USAGE', `--proto "${String(proto)}" is not tcp or udp`);
}

export const traceCommand: Command = {
  name: 'trace',
  summary: "an incident's (time, public address, port) -> the client address and eduVPN user",
  usage:
    '--at TIME --port PORT [--address PUBLIC] [--proto tcp|udp] [--archive-dir DIR]... [--json]',
  options: {
    at: { type: 'string' },
    port: { type: 'string' },
    address: { type: 'string' },
    proto: { type: 'string' },
    'archive-dir': ARCHIVE_DIR_OPTION,
    json: { type: 'boolean' },
  },
  run(context, options) {
    const time = incidentTimeOf(options, context.io);
    const port = portOption(options);
    const address = addressOption(options, 'address');
    const proto = protoOption(options);
    const config = context.config();
    const result = traceArchives(archiveDirsFor(config, options), {
      at: time.unixSeconds,
      port,
      address,
      proto,
      now: Math.floor(systemClock.now() / 1000),
    });
    const clients = result.candidates.map((candidate) => candidate.client);
    const users = new Map<number, UserAnswer>();
    if (clients.length > 0) {
      const databases = openPortalDatabases(
        [config.trace.portalDatabase, config.trace.serverApiDatabase],
        zoneFor(context.io),
        SWITCH_MARGIN_SECONDS,
      );
      try {
        for (const client of clients) {
          users.set(client, databases.sessionsOf(formatIpv4(client), time.unixSeconds));
        }
      } finally {
        databases.close();
      }
    }
    const report: TraceReport = {
      time,
      port,
      address,
      proto,
      result,
      users,
      profilesToday: profilesToday(config, clients),
    };
    context.io.stdout(
      options.json ? `${JSON.stringify(traceJson(report), null, 2)}\n` : traceText(report),
    );
    return Promise.resolve(EXIT_FOR_STATUS[overallStatus(report)]);
  },
};
