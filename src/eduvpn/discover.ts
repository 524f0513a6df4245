/**
 * Which eduVPN files describe this machine's clients, and their pools. File access goes through
 * a SourceReader the caller passes in, so this stays pure and tests use an in-memory one.
 */
import { posix } from 'node:path';
import type { Config } from '../config.js';
import { TnatError } from '../errors.js';
import { parseNodeFiles, isOpenVpnServerFileName, type NodeFile } from './node-files.js';
import { parsePhpConfig } from './php.js';
import type { Discovery, SourceKind } from './pool.js';
import { parsePortalConfig } from './portal.js';
import { parseProfilesDir } from './profiles-dir.js';
import { parseServerApiConfig } from './server-api.js';

export interface SourceReader {
  /** The file's text; undefined when it does not exist. Throws a TnatError when unreadable. */
  readText(path: string): string | undefined;
  /** The directory's entry names; undefined when it does not exist. */
  listDir(path: string): string[] | undefined;
}

type Settings = Config['eduvpn'];

/** Reads one source; undefined when its files are not there. */
type SourceRead = (settings: Settings, reader: SourceReader) => Discovery | undefined;

/** The directory's entries that `keep` accepts, sorted so that every run reads the same order. */
function listFiles(reader: SourceReader, dir: string, keep: (name: string) => boolean): NodeFile[] {
  const names = (reader.listDir(dir) ?? []).filter(keep).sort();
  return names.flatMap((name) => {
    const file = posix.join(dir, name);
    const text = reader.readText(file);
    // Listed but gone by now: it was removed while we looked, as if it had never been there.
    return text === undefined ? [] : [{ file, text }];
  });
}

const readPortal: SourceRead = (settings, reader) => {
  const file = settings.portalConfig;
  const text = reader.readText(file);
  if (text === undefined) return undefined;
  return {
    source: 'portal',
    files: [file],
    pools: parsePortalConfig(text, file, settings.nodeNumber),
  };
};

const readProfiles: SourceRead = (settings, reader) => {
  const files = listFiles(reader, settings.profilesDir, (name) => name.endsWith('.json'));
  if (files.length === 0) return undefined;
  return {
    source: 'profiles',
    files: files.map(({ file }) => file),
    pools: parseProfilesDir(files, settings.nodeNumber),
  };
};

const readNode: SourceRead = (settings, reader) => {
  const openvpn = listFiles(reader, settings.openvpnDir, isOpenVpnServerFileName);
  const wireguardText = reader.readText(settings.wireguardConfig);
  const wireguard =
    wireguardText === undefined
      ? undefined
      : { file: settings.wireguardConfig, text: wireguardText };
  if (openvpn.length === 0 && !wireguard) return undefined;
  return {
    source: 'node',
    files: [...openvpn, ...(wireguard ? [wireguard] : [])].map(({ file }) => file),
    pools: parseNodeFiles({ openvpn, wireguard }),
  };
};

const readServerApi: SourceRead = (settings, reader) => {
  const file = settings.serverApiConfig;
  const text = reader.readText(file);
  if (text === undefined) return undefined;
  const nodeText = reader.readText(settings.nodeConfig);
  const nodeConfig =
    nodeText === undefined
      ? undefined
      : { value: parsePhpConfig(nodeText, settings.nodeConfig), file: settings.nodeConfig };
  return {
    source: 'server-api',
    files: nodeConfig ? [file, nodeConfig.file] : [file],
    pools: parseServerApiConfig(text, file, nodeConfig),
  };
};

const READERS: Readonly<Record<SourceKind, SourceRead>> = {
  portal: readPortal,
  profiles: readProfiles,
  node: readNode,
  'server-api': readServerApi,
};

/**
 * The order `auto` tries. Newest layout first: a 3.9.7+ portal keeps its profiles as JSON files
 * in the profiles directory while config.php still exists for everything else, so when that
 * directory holds *.json files it wins over config.php. Then a 3.x single server or controller
 * (config.php), then a 3.x node (its generated OpenVPN and WireGuard files), then 2.x.
 */
const AUTO_ORDER: readonly SourceKind[] = ['profiles', 'portal', 'node', 'server-api'];

/** The setting that names where a source's files are. */
const PATH_KEY: Readonly<Record<SourceKind, string>> = {
  portal: 'portalConfig',
  profiles: 'profilesDir',
  node: 'openvpnDir (or eduvpn.wireguardConfig)',
  'server-api': 'serverApiConfig',
};

function missing(source: SourceKind, settings: Settings): TnatError {
  const fix = `eduvpn.source is ${source}: fix eduvpn.${PATH_KEY[source]} or set eduvpn.source to auto`;
  const absent: Readonly<Record<SourceKind, readonly [string, string]>> = {
    portal: [settings.portalConfig, 'does not exist'],
    profiles: [settings.profilesDir, 'holds no *.json profile files'],
    node: [
      settings.openvpnDir,
      `holds no <profileId>-<n>.conf files and ${settings.wireguardConfig} does not exist`,
    ],
    'server-api': [settings.serverApiConfig, 'does not exist'],
  };
  const [file, what] = absent[source];
  return new TnatError('E_SOURCE', `${what}, but ${fix}`, { where: { file } });
}

export function discoverPools(settings: Settings, reader: SourceReader): Discovery {
  if (settings.source !== 'auto') {
    const found = READERS[settings.source](settings, reader);
    if (!found) throw missing(settings.source, settings);
    return found;
  }
  for (const source of AUTO_ORDER) {
    const found = READERS[source](settings, reader);
    if (found) return found;
  }
  throw new TnatError(
    'E_SOURCE',
    `found no eduVPN configuration: none of ${settings.profilesDir}/*.json, ${settings.portalConfig}, ` +
      `${settings.openvpnDir}/<profileId>-<n>.conf, ${settings.wireguardConfig} or ` +
      `${settings.serverApiConfig} exists; set eduvpn.portalConfig (or the other eduvpn paths) to where the files are`,
  );
}
