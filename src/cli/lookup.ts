/**
 * `traceable-nat lookup <client>`: the public address and port block of one client address in
 * the current configuration or, with `--at TIME`, in the rulesets archived for that moment.
 */
import { planFromDisk } from '../apply/apply.js';
import { TnatError } from '../errors.js';
import { TwinIndex } from '../mapping/twin6.js';
import { formatAddress, type Address } from '../net/address.js';
import { formatCidr4, formatIpv4, parseIpv4 } from '../net/ipv4.js';
import { formatIpv6, parseIpv6 } from '../net/ipv6.js';
import { systemClock } from '../system/clock.js';
import { lookupClientAt, type LookupAtResult } from '../trace/lookup-at.js';
import type { Config } from '../config.js';
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
  archiveDirOf,
  archiveDirsFor,
  clientFactsFinder,
  incidentTimeOf,
} from './trace-sources.js';

/** Where a client leaves: its public address and port block (undefined: every port, NETMAP). */
interface Where {
  readonly publicAddress: Address;
  readonly ports: readonly [number, number] | undefined;
}

function whereText({ publicAddress, ports }: Where): string {
  if (ports === undefined) return `${formatAddress(publicAddress)} (all ports)`;
  const address =
    typeof publicAddress === 'bigint'
      ? `[${formatAddress(publicAddress)}]`
      : formatAddress(publicAddress);
  return `${address} ports ${ports[0]}-${ports[1]}`;
}

function whereJson(where: Where | undefined) {
  return where === undefined
    ? null
    : {
        publicAddress: formatAddress(where.publicAddress),
        firstPort: where.ports?.[0] ?? null,
        lastPort: where.ports?.[1] ?? null,
      };
}

function sameWhere(a: Where | undefined, b: Where | undefined): boolean {
  return (
    a?.publicAddress === b?.publicAddress &&
    a?.ports?.[0] === b?.ports?.[0] &&
    a?.ports?.[1] === b?.ports?.[1]
  );
}

/**
 * What the active ruleset, the newest archive of firewall.archiveDir (the one the kernel holds;
 * `status` tells whether it does), says of `client` now: the plan of today's configuration is
 * only what the next apply makes of it. Undefined: nothing is archived there yet.
 */
function activeNow(config: Config, client: Address): LookupAtResult | undefined {
  const dir = archiveDirOf(config.firewall.archiveDir, config);
  // Without the switch margin, which allows for the clock of an abuse report: "now" is this
  // machine's moment. And after the newest archive's second: an archive is committed once the
  // kernel took its rules, so it is active now, even within the second it is named after. An
  // interrupted apply's pending archive still leaves two answers. Likewise after a repair of
  // the kernel (a drift window ends once the kernel took the rules again): now is past it.
  const newest = dir.entries.at(-1);
  const repairedAt = Math.max(
    0,
    ...(dir.drifts ?? [])
      .filter((drift) => drift.archive === newest?.name)
      .map((drift) => drift.to),
  );
  const at = Math.max(
    Math.floor(systemClock.now() / 1000),
    (newest?.activatedAt ?? 0) + 1,
    repairedAt + 1,
  );
  const result = lookupClientAt([dir], client, at, 0, at);
  return result.archives.length === 0 ? undefined : result;
}

/** What answerNow answers for one client. */
interface NowQuery {
  readonly client: Address;
  /** The JSON's fields of the client (its address, profile, ...). */
  readonly fields: Record<string, unknown>;
  /** The text line's start: the client, its profile. */
  readonly describe: string;
  /** Where today's configuration plans it (undefined: no block). */
  readonly planned: Where | undefined;
  /** activeNow of the client. */
  readonly active: LookupAtResult | undefined;
}

/**
 * `lookup <client>` without --at: the client's block in the active ruleset, and the plan of
 * today's configuration beside it when that differs (not applied yet: an apply, or the daemon
 * once the change settles, makes it active). With nothing applied yet, the plan, said to be
 * one.
 */
function answerNow(context: CommandContext, options: OptionValues, query: NowQuery): number {
  const { client, fields, describe, planned, active } = query;
  const config = context.config();
  if (active?.status === 'ambiguous') {
    // Within seconds of a switch, or an apply interrupted: both answers, as --at gives them.
    return lookupAt(context, { ...options, at: new Date(systemClock.now()).toISOString() }, client);
  }
  const [first] = active?.matches ?? [];
  const where: Where | undefined =
    active === undefined
      ? planned
      : first && {
          publicAddress: first.assignment.publicAddress,
          ports: first.assignment.netmap
            ? undefined
            : [first.assignment.firstPort, first.assignment.lastPort],
        };
  const archive = first?.archive.entry.name ?? active?.archives.at(-1)?.entry.name;
  const applied = active !== undefined && sameWhere(where, planned);
  if (options.json) {
    const json = {
      found: where !== undefined,
      ...fields,
      ...whereJson(where),
      source: active === undefined ? 'plan' : 'active',
      archive: archive ?? null,
      applied,
      planned: whereJson(planned),
    };
    context.io.stdout(JSON.stringify(json, null, 2) + '\n');
    return where === undefined ? EXIT.notOk : EXIT.ok;
  }
  const notApplied = planned
    ? `the current configuration plans ${whereText(planned)} for it, not applied yet (traceable-nat apply; the daemon applies it once the change settles)`
    : 'the current configuration has no block for it any more, not applied yet';
  const nothingApplied = `nothing is applied yet (no archive in ${config.firewall.archiveDir})`;
  const lines =
    active === undefined
      ? planned
        ? [`${describe} -> ${whereText(planned)}`, `  planned: ${nothingApplied}`]
        : [`${describe}: no block planned, and ${nothingApplied}`]
      : where === undefined
        ? [`${describe}: no block in the active ruleset (${archive ?? '?'})`, `  ${notApplied}`]
        : applied
          ? [`${describe} -> ${whereText(where)}`]
          : [`${describe} -> ${whereText(where)} (active, ${archive ?? '?'})`, `  ${notApplied}`];
  context.io.stdout(lines.join('\n') + '\n');
  return where === undefined ? EXIT.notOk : EXIT.ok;
}

function lookupNow(context: CommandContext, options: OptionValues, client: number, text: string) {
  const config = context.config();
  const assignment = planFromDisk(config, discover(config)).map.forward(client);
  const active = activeNow(config, client);
  if (!assignment && (active?.matches.length ?? 0) === 0) {
    context.io.stdout(
      options.json ? '{"found":false}\n' : `${text} is not a client address of any profile\n`,
    );
    return EXIT.notOk;
  }
  const fields = {
    client: formatIpv4(client),
    profileId: assignment?.pool.profileId ?? null,
    subnet: assignment ? formatCidr4(assignment.pool.subnet4) : null,
  };
  const describe = assignment
    ? `${fields.client} (profile ${assignment.pool.profileId}, ${fields.subnet ?? ''})`
    : `${fields.client} (in no profile today)`;
  const planned: Where | undefined = assignment && {
    publicAddress: assignment.publicAddress,
    ports: [assignment.firstPort, assignment.lastPort],
  };
  return answerNow(context, options, { client, fields, describe, planned, active });
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
  const fields = {
    client: formatIpv6(client),
    twin: formatIpv4(found.client4),
    profileId: pool.profileId,
    subnet6: pool.subnet6 ?? null,
  };
  const describe = `${fields.client} (twin of ${fields.twin}) (profile ${fields.profileId}, ${fields.subnet6 ?? '-'})`;
  if (config.nat6 === undefined) {
    context.io.stdout(
      options.json
        ? JSON.stringify(
            { found: true, ...fields, publicAddress: null, firstPort: null, lastPort: null },
            null,
            2,
          ) + '\n'
        : `${describe}: not translated by traceable-nat (no nat6); ${IPV6_UNTRACEABLE}\n`,
    );
    return EXIT.ok;
  }
  const block = assignment?.block;
  const planned: Where | undefined = assignment && {
    publicAddress: assignment.publicAddress,
    ports: block && [block.first, block.last],
  };
  const active = activeNow(config, client);
  return answerNow(context, options, { client, fields, describe, planned, active });
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
