/**
 * Activations with an IPv6 half, written as apply writes them: the real prepareArchive/commit
 * of src/archive/store.ts, over rendered rules (renderIp6tablesChains merged into eduVPN's
 * rules.v6, or renderNftTable6 after the `table ip`). The expected answers come from the Map6
 * each was rendered from, never from the trace code.
 */
import { prepareArchive } from '../../src/archive/store.js';
import type { ArchiveHeader, Backend } from '../../src/archive/header.js';
import type { Map6 } from '../../src/mapping/map6.js';
import { renderIp6tablesChains } from '../../src/render/iptables6.js';
import { renderNftTable6 } from '../../src/render/nftables6.js';
import { mergeIntoRulesFile } from '../../src/render/rules-file.js';
import { readFixture } from '../render/golden.js';
import { iptablesBody, nftBody, type Row } from './archive-fixtures.js';
import { settings6Of } from '../../src/apply/execute.js';

export interface Activation {
  /** Unix seconds the kernel finished loading it (the name). */
  readonly at: number;
  readonly backend: Backend;
  /** The IPv4 bindings (client, public, first, last). */
  readonly rows: readonly Row[];
  /** The IPv6 map, or none: eduVPN's own masquerade translated IPv6 then. */
  readonly map6?: Map6 | undefined;
  /** Seconds before `at` that the apply began; 1 by default. */
  readonly took?: number;
  /** Left as `.pending` (the applier was killed while the kernel took it). */
  readonly interrupted?: boolean;
}

const OPTIONS = { outInterface: 'eth0' };

/** The merged rules.v6 of a map, as apply writes it over eduVPN's own. */
export function rulesV6(map: Map6): string {
  return mergeIntoRulesFile(
    readFixture('eduvpn3-rules.v6'),
    renderIp6tablesChains(map, OPTIONS),
    '/etc/iptables/rules.v6',
  );
}

/** Writes the activations, oldest first, chained; returns the names of the chain's files. */
export function writeActivations(
  dir: string,
  activations: readonly Activation[],
  compress = true,
): string[] {
  let previous: { name: string; sha256: string } | undefined;
  const names: string[] = [];
  for (const activation of [...activations].sort((a, b) => a.at - b.at)) {
    const { at, backend, rows, map6 } = activation;
    const header: Omit<ArchiveHeader, 'previous'> = {
      tool: 'traceable-nat test',
      backend,
      applyStarted: new Date((at - (activation.took ?? 1)) * 1000 + 250).toISOString(),
      reason: previous ? 'changed' : 'first',
      clients: rows.length,
      settings: {
        publicAddresses: [...new Set(rows.map((row) => row[1]))],
        // As an apply records it (trace reads a prefix mode's client ranges from it).
        ...(map6 ? { nat6: settings6Of(map6) } : {}),
      },
    };
    let v4;
    let half;
    if (backend === 'nftables') {
      const body = nftBody(rows) + (map6 ? renderNftTable6(map6, OPTIONS) : '');
      v4 = prepareArchive(dir, header, body, previous, compress);
    } else {
      half = map6
        ? prepareArchive(
            dir,
            { ...header, family: 'ipv6' },
            rulesV6(map6),
            undefined,
            compress,
            'ip6tables',
          )
        : undefined;
      const ipv6 = half ? { ipv6: { sha256: half.sha256 } } : {};
      v4 = prepareArchive(dir, { ...header, ...ipv6 }, iptablesBody(rows), previous, compress);
    }
    if (activation.interrupted) continue;
    half?.commit(at);
    const committed = v4.commit(at);
    const name = committed.path.slice(dir.length + 1);
    names.push(name);
    previous = { name, sha256: committed.sha256 };
  }
  return names;
}
