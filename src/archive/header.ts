/**
 * The comment header of an archived ruleset. `#` lines are comments to both iptables-restore and
 * nft, so an archive can still be loaded as it is. The `previous` line chains every archive to
 * the one before it by SHA-256, so a deleted or edited archive shows up in `traceable-nat check`.
 */
import { createHash } from 'node:crypto';

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
    `# end of traceable-nat header`,
  ];
  return `${lines.join('\n')}\n${body}`;
}

/** Reads the header of one of our archives; undefined for other files (e.g. the original script's). */
export function parseArchiveHeader(text: string): ArchiveHeader | undefined {
  if (!text.startsWith(MARK)) return undefined;
  const fields = new Map<string, string>();
  for (const line of text.split('\n', 20)) {
    if (line === '# end of traceable-nat header') break;
    const match = /^# ([a-z-]+): (.*)$/.exec(line);
    if (match?.[1] && match[2] !== undefined) fields.set(match[1], match[2]);
  }
  const previous = /^(\S+) sha256:([0-9a-f]{64})$/.exec(fields.get('previous') ?? '');
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
  };
}

/** The ruleset itself: everything after our header (the whole text for a foreign file). */
export function archiveBody(text: string): string {
  if (!text.startsWith(MARK)) return text;
  const end = text.indexOf('# end of traceable-nat header\n');
  return end < 0 ? text : text.slice(end + '# end of traceable-nat header\n'.length);
}
