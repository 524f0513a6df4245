/**
 * `traceable-nat trace --at TIME --port PORT [--address PUBLIC] [--proto tcp|udp]`: from an
 * abuse report's (time, public address, source port) to the client address, from the rulesets
 * archived for that moment, and to the eduVPN user from the portal's connection log.
 * `--batch FILE` answers a whole feed of such rows (src/cli/trace-batch.ts).
 */
import { TnatError } from '../errors.js';
import type { Address } from '../net/address.js';
import type { Command, OptionValues } from './command.js';
import { traceAnswerer } from './trace-answer.js';
import { parsePort, parseProto } from './trace-query.js';
import { EXIT_FOR_STATUS, overallStatus, traceJson, traceText } from './trace-report.js';
import {
  addressOption,
  ARCHIVE_DIR_OPTION,
  archiveDirsFor,
  incidentTimeOf,
  zoneFor,
} from './trace-sources.js';

/** The port; only an IPv6 address may come without one (prefix mode: every port is its client's). */
function portOption(options: OptionValues, address: Address | undefined): number | undefined {
  const text = options.port;
  if (typeof text === 'string') return parsePort(text, '--port');
  if (typeof address === 'bigint') return undefined;
  throw new TnatError('E_USAGE', 'give the source port with --port PORT');
}

function protoOption(options: OptionValues): 'tcp' | 'udp' | undefined {
  const proto = options.proto;
  return typeof proto === 'string' ? parseProto(proto, '--proto') : undefined;
}

export const traceCommand: Command = {
  name: 'trace',
  options: {
    at: { type: 'string' },
    port: { type: 'string' },
    address: { type: 'string' },
    proto: { type: 'string' },
    batch: { type: 'string' },
    'archive-dir': ARCHIVE_DIR_OPTION,
    json: { type: 'boolean' },
  },
  run(context, options) {
    if (options.batch !== undefined) {
      // A single trace does not load the feed reader (issue 15: every module is startup time).
      return import('./trace-batch.js').then((batch) => batch.runTraceBatch(context, options));
    }
    const time = incidentTimeOf(options, context.io);
    const address = addressOption(options, 'address');
    const port = portOption(options, address);
    const proto = protoOption(options);
    const config = context.config();
    const answerer = traceAnswerer(config, archiveDirsFor(config, options), zoneFor(context.io));
    let report;
    try {
      report = answerer.answer({ time, port, address, proto });
    } finally {
      answerer.close();
    }
    context.io.stdout(
      options.json ? `${JSON.stringify(traceJson(report), null, 2)}\n` : traceText(report),
    );
    return Promise.resolve(EXIT_FOR_STATUS[overallStatus(report)]);
  },
};
