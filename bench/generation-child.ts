/**
 * Runs in a child process of its own so its peak memory is its own. Reads the eduVPN files of
 * a configuration, maps the clients and renders the ruleset an apply would load (nothing is
 * applied): prints {"ms","clients","bytes","peakKiB"}. With `stages`, times discovery,
 * mapping and rendering on their own instead: {"discoverMs","mapMs","renderMs"}. With
 * `archive`, what its archive costs on disk: {"archiveBytes","archiveMs","bytes"}. With no
 * argument it prints the peak memory of node with these modules loaded and idle, the baseline.
 *   node generation-child.js [CONFIG_FILE [stages]]
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { natSettings, planRuleset } from '../src/apply/plan.js';
import type { Config } from '../src/config.js';
import { loadConfig } from '../src/config-file.js';
import { discoverPools } from '../src/eduvpn/discover.js';
import { mapClients } from '../src/mapping/map.js';
import { renderIptablesChains } from '../src/render/iptables.js';
import { renderNftTable } from '../src/render/nftables.js';
import { fsSourceReader } from '../src/system/fs-source-reader.js';
import { encodeArchive } from '../src/archive/store.js';

function plan(config: Config): Record<string, number> {
  const start = performance.now();
  const discovery = discoverPools(config.eduvpn, fsSourceReader);
  const planned = planRuleset(config, discovery, { rulesText: undefined, archiveBody: undefined });
  return {
    ms: performance.now() - start,
    clients: planned.map.clientCount,
    bytes: planned.fileText.length,
  };
}

/** What the archive of this ruleset costs on disk, compressed as the store writes it. */
function archive(config: Config): Record<string, number> {
  const discovery = discoverPools(config.eduvpn, fsSourceReader);
  const planned = planRuleset(config, discovery, { rulesText: undefined, archiveBody: undefined });
  const start = performance.now();
  const archiveBytes = encodeArchive(planned.fileText, true).length;
  return { archiveMs: performance.now() - start, archiveBytes, bytes: planned.fileText.length };
}

function stages(config: Config): Record<string, number> {
  const start = performance.now();
  const discovery = discoverPools(config.eduvpn, fsSourceReader);
  const discovered = performance.now();
  const map = mapClients(discovery.pools, natSettings(config));
  const mapped = performance.now();
  const options = { outInterface: config.nat.outInterface };
  if (config.firewall.backend === 'nftables') renderNftTable(map, options);
  else renderIptablesChains(map, options);
  const rendered = performance.now();
  return {
    discoverMs: discovered - start,
    mapMs: mapped - discovered,
    renderMs: rendered - mapped,
  };
}

/**
 * The peak resident memory of this process image. Not getrusage's maxRSS: Linux carries that
 * over through exec from the parent's memory (libuv starts children with a vfork-like clone),
 * so a child of a big parent would report the parent's peak.
 */
function peakKiB(): number {
  const status = readFileSync('/proc/self/status', 'utf8');
  return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? Number.NaN);
}

const [configFile, mode] = process.argv.slice(2);
const config = configFile === undefined ? undefined : loadConfig(configFile);
const modes = { stages, archive, plan } as const;
const result =
  config === undefined
    ? {}
    : modes[mode === 'stages' || mode === 'archive' ? mode : 'plan'](config);
process.stdout.write(JSON.stringify({ ...result, peakKiB: peakKiB() }) + '\n');
