/**
 * The comment header of an archived ruleset. `#` lines are comments to both iptables-restore and
 * nft, so an archive can still be loaded as it is. The `previous` line chains every archive to
 * the one before it by SHA-256, so a deleted or edited archive shows up in `traceable-nat check`.
 */
import { createHash } from 'node:crypto';
import type { BootTime } from '../system/clock.js';

/**
 * How the `reason` of an archive applied with --force over an anchor mismatch begins (the
 * mismatch follows): rulesets archived before it may be gone, which trace takes into account.
 */
export const FORCED_OVER_MISMATCH = 'forced over an anchor mismatch: ';

export type Backend = 'iptables' | 'nftables';

export interface ArchiveHeader {
  readonly tool: string;
  readonly backend: Backend;
  /** When the apply that activated this ruleset started (the name holds when it finished). */
  readonly applyStarted: string;
  readonly reason: string;
  readonly clients: number;
  /** The settings that produced it, as one line of JSON. */
  readonly settings: Readonly<Record<string, unknown>>;
  /** The archive this one replaced, or undefined for the first. */
  readonly previous: { readonly name: string; readonly sha256: string } | undefined;
  /**
   * iptables with nat6: the SHA-256 of the stored bytes of `rules.v6.<the same seconds>`, the
   * IPv6 half of this activation (so the chain vouches for it too). Absent: IPv6 was not ours.
   */
  readonly ipv6?: { readonly sha256: string } | undefined;
  /** `ipv6` on the rules.v6 half itself (absent: the file's family is the backend's own). */
  readonly family?: 'ipv6' | undefined;
  /**
   * The boot clock when the apply started (paired with applyStarted), so trace can tell a step
   * of the wall clock between two archives of one boot (see BootTime). Absent: not readable.
   */
  readonly clock?: BootTime | undefined;
}

const MARK = '# traceable-nat archive';

export function sha256(content: string | Buffer): string {
  return createHash('sha256').update(content).digest('hex');
}

export function renderArchive(header: ArchiveHeader, body: string): string {
  const lines = [
    `${MARK}: this ruleset became active at the time in the file name (unix seconds)`,
    `# tool: ${header.tool}`,
    `# backend: ${header.backend}`,
    `# apply-started: ${header.applyStarted}`,
    `# reason: ${header.reason}`,
    `# clients: ${header.clients}`,
    `# settings: ${JSON.stringify(header.settings)}`,
    `# previous: ${header.previous ? `${header.previous.name} sha256:${header.previous.sha256}` : 'none'}`,
  ];
  // Only when present, so the archives of an IPv4-only server keep their exact old form.
  if (header.ipv6) lines.push(`# ipv6: sha256:${header.ipv6.sha256}`);
  if (header.family) lines.push(`# family: ${header.family}`);
  if (header.clock) {
    lines.push(`# boot-clock: ${header.clock.boot} ${header.clock.seconds.toFixed(3)}`);
  }
  lines.push('# end of traceable-nat header');
  return `${lines.join('\n')}\n${body}`;
}

/** Reads the header of one of our archives; undefined for other files (e.g. the original script's). */
export function parseArchiveHeader(text: string): ArchiveHeader | undefined {
  if (!text.startsWith(MARK)) return undefined;
  const fields = new Map<string, string>();
  for (const line of text.split('\n', 20)) {
    if (line === '# end of traceable-nat header') break;
    const match = /^# ([a-z0-9-]+): (.*)$/.exec(line);
    if (match?.[1] && match[2] !== undefined) fields.set(match[1], match[2]);
  }
  const previous = /^(\S+) sha256:([0-9a-f]{64})$/.exec(fields.get('previous') ?? '');
  const ipv6 = /^sha256:([0-9a-f]{64})$/.exec(fields.get('ipv6') ?? '')?.[1];
  const clock = /^(\S+) (\d+(?:\.\d+)?)$/.exec(fields.get('boot-clock') ?? '');
  let settings: Record<string, unknown> = {};
  try {
    settings = JSON.parse(fields.get('settings') ?? '{}') as Record<string, unknown>;
  } catch {
    // an edited header: check reports the hash mismatch, the rest stays readable
  }
  return {
    tool: fields.get('tool') ?? '',
    backend: fields.get('backend') === 'nftables' ? 'nftables' : 'iptables',
    applyStarted: fields.get('apply-started') ?? '',
    reason: fields.get('reason') ?? '',
    clients: Number(fields.get('clients') ?? 0),
    settings,
    previous: previous?.[1] && previous[2] ? { name: previous[1], sha256: previous[2] } : undefined,
    ...(ipv6 === undefined ? {} : { ipv6: { sha256: ipv6 } }),
    ...(fields.get('family') === 'ipv6' ? { family: 'ipv6' as const } : {}),
    ...(clock?.[1] && clock[2] ? { clock: { boot: clock[1], seconds: Number(clock[2]) } } : {}),
  };
}

/** The ruleset itself: everything after our header (the whole text for a foreign file). */
export function archiveBody(text: string): string {
  if (!text.startsWith(MARK)) return text;
  const end = text.indexOf('# end of traceable-nat header\n');
  return end < 0 ? text : text.slice(end + '# end of traceable-nat header\n'.length);
}

/**
 * An iptables ruleset ends with COMMIT, an nft table with its closing brace: else it was cut.
 * Comment lines after it (iptables-save's `# Completed on ...`, kept by the merge) do not count.
 */
export function rulesetLooksComplete(body: string): boolean {
  // From the last line up, past blank and comment lines: a /16 is read from its end only.
  let end = body.length;
  while (end > 0) {
    const start = body.lastIndexOf('\n', end - 1) + 1;
    const line = body.slice(start, end).trim();
    if (line !== '' && !line.startsWith('#')) return line.endsWith('COMMIT') || line.endsWith('}');
    end = start - 1;
  }
  return false;
}
