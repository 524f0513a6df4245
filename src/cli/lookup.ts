/**
 * `traceable-nat lookup <client>`: the public address and port block of one client address in
 * the current configuration or, with `--at TIME`, in the rulesets archived for that moment.
 */
import { planFromDisk } from '../apply/apply.js';
import { TnatError } from '../errors.js';
import { formatAssignment6 } from '../mapping/map6.js';
import { TwinIndex } from '../mapping/twin6.js';
import { formatAddress, type Address } from '../net/address.js';
import { formatCidr4, formatIpv4, parseIpv4 } from '../net/ipv4.js';
import { formatIpv6, parseIpv6 } from '../net/ipv6.js';
import { systemClock } from '../system/clock.js';
import { lookupClientAt } from '../trace/lookup-at.js';
import { SWITCH_MARGIN_SECONDS } from '../trace/timeline.js';
import type { Command, CommandContext, OptionValues } from './command.js';
import { discover } from './discovery.js';
import { EXIT } from './io.js';
import { IPV6_UNTRACEABLE, planIpv6FromDisk } from './ipv6-plan.js';
import {
  archiveJson,
  blockJson,
  blockText,
  clientText,
  EXIT_FOR_STATUS,
  noteLines,
  reportLine,
  rulesetLines,
  timeJson,
  timeLine,
} from './trace-report.js';
import {
  ARCHIVE_DIR_OPTION,
  archiveDirsFor,
  clientFactsFinder,
  incidentTimeOf,
} from './trace-sources.js';

function lookupNow(context: CommandContext, options: OptionValues, client: number, text: string) {
  const config = context.config();
  const assignment = planFromDisk(config, discover(config)).map.forward(client);
  if (!assignment) {
    context.io.stdout(
      options.json ? '{"found":false}\n' : `${text} is not a client address of any profile\n`,
    );
    return EXIT.notOk;
  }
  const result = {
    found: true,
    client: formatIpv4(assignment.client),
    profileId: assignment.pool.profileId,
    subnet: formatCidr4(assignment.pool.subnet4),
    publicAddress: formatIpv4(assignment.publicAddress),
    firstPort: assignment.firstPort,
    lastPort: assignment.lastPort,
  };
  context.io.stdout(
    options.json
      ? JSON.stringify(result, null, 2) + '\n'
      : `${result.client} (profile ${result.profileId}, ${result.subnet}) -> ${result.publicAddress} ports ${result.firstPort}-${result.lastPort}\n`,
  );
  return EXIT.ok;
}

/**
 * An IPv6 client address: its IPv4 twin and, with nat6, where it leaves. Without nat6 the
 * twin is still named, with the honest note that IPv6 is not traceable here.
 */
function lookupNow6(context: CommandContext, options: OptionValues, client: bigint, text: string) {
  const config = context.config();
  const discovery = discover(config);
  const found = new TwinIndex(discovery.pools).clientOf(client);
  if (!found) {
    context.io.stdout(
      options.json ? '{"found":false}\n' : `${text} is not an IPv6 client address of any profile\n`,
    );
    return EXIT.notOk;
  }
  const assignment = planIpv6FromDisk(config, discovery)?.map.forward(client);
  const { pool } = found.span;
  const result = {
    found: true,
    client: formatIpv6(client),
    twin: formatIpv4(found.client4),
    profileId: pool.profileId,
    subnet6: pool.subnet6 ?? null,
    publicAddress: assignment ? formatIpv6(assignment.publicAddress) : null,
    firstPort: assignment?.block?.first ?? null,
    lastPort: assignment?.block?.last ?? null,
  };
  const where = assignment
    ? ` -> ${assignment.block ? `[${result.publicAddress ?? ''}] ports ${result.firstPort ?? ''}-${result.lastPort ?? ''}` : `${formatAssignment6(assignment)} (all ports)`}`
    : `: not translated by traceable-nat (no nat6); ${IPV6_UNTRACEABLE}`;
  context.io.stdout(
    options.json
      ? JSON.stringify(result, null, 2) + '\n'
      : `${result.client} (twin of ${result.twin}) (profile ${result.profileId}, ${result.subnet6 ?? '-'})${where}\n`,
  );
  return EXIT.ok;
}

function lookupAt(context: CommandContext, options: OptionValues, client: Address) {
  const time = incidentTimeOf(options, context.io);
  const config = context.config();
  const result = lookupClientAt(
    archiveDirsFor(config, options),
    client,
    time.unixSeconds,
    SWITCH_MARGIN_SECONDS,
    Math.floor(systemClock.now() / 1000),
  );
  // An IPv6 client's IPv4 twin, from today's pools: a hint, as in trace.
  const { twin } = typeof client === 'bigint' ? clientFactsFinder(config)(client) : {};
  if (options.json) {
    const json = {
      found: result.status === 'found',
      status: result.status,
      client: formatAddress(client),
      ...(typeof client === 'bigint' ? { twin: twin === undefined ? null : formatIpv4(twin) } : {}),
      time: timeJson(time),
      blocks: result.matches.map(blockJson),
      archives: result.archives.map(archiveJson),
      notes: result.notes.map((note) => ({ code: note.code, message: note.message })),
    };
    context.io.stdout(`${JSON.stringify(json, null, 2)}\n`);
  } else {
    const blocks = result.matches.map((match) =>
      reportLine('Block', `${blockText(match.assignment)} in ${match.archive.entry.name}`),
    );
    const answer = {
      found: 'FOUND',
      ambiguous: 'AMBIGUOUS: see the notes',
      'not-found': 'NOT FOUND: see the notes',
    }[result.status];
    context.io.stdout(
      [
        timeLine(time),
        reportLine('Client', clientText(client, twin)),
        rulesetLines(result.archives),
        ...blocks,
        noteLines(result.notes),
        reportLine('Answer', answer),
      ].join(''),
    );
  }
  return EXIT_FOR_STATUS[result.status];
}

export const lookupCommand: Command = {
  name: 'lookup',
  options: { json: { type: 'boolean' }, at: { type: 'string' }, 'archive-dir': ARCHIVE_DIR_OPTION },
  positionals: { min: 1, max: 1 },
  run(context, options, positionals) {
    const text = positionals[0] ?? '';
    const client6 = text.includes(':') ? parseIpv6(text) : undefined;
    if (client6 !== undefined) {
      return Promise.resolve(
        options.at === undefined
          ? lookupNow6(context, options, client6, text)
          : lookupAt(context, options, client6),
      );
    }
    const client = parseIpv4(text);
    if (client === undefined) {
      const family = text.includes(':') ? 'IPv6' : 'IPv4';
      throw new TnatError('E_USAGE', `"${text}" is not an ${family} address`);
    }
    return Promise.resolve(
      options.at === undefined
        ? lookupNow(context, options, client, text)
        : lookupAt(context, options, client),
    );
  },
};
