/**
 * The per-client SNAT as one nftables table of our own, for eduVPN 3.x installs that use
 * nftables. Lookups are map lookups (no per-client rules to walk), and an `nft -f` transaction
 * replaces the table or changes single elements atomically.
 */
import { formatIpv4 } from '../net/ipv4.js';
import type { PortBlock, PortMap } from '../mapping/types.js';

export const DEFAULT_NFT_TABLE = 'traceable_nat';

export interface NftOptions {
  /** The interface towards the internet: only packets leaving through it are translated. */
  readonly outInterface: string;
  /** Our table in family `ip`; `traceable_nat` by default. */
  readonly table?: string;
}

/** One client's (public address, port block), from a PortMap or read back from a ruleset. */
export type NftAssignment =
  | { readonly client: number; readonly publicAddress: number; readonly block: PortBlock }
  | {
      readonly client: number;
      readonly publicAddress: number;
      readonly firstPort: number;
      readonly lastPort: number;
    };

export type AssignmentSource = PortMap | Iterable<NftAssignment>;

interface Entry {
  readonly client: number;
  readonly publicAddress: number;
  readonly first: number;
  readonly last: number;
  /** `client : public address`, the element of `others` and the start of one of `clients`. */
  readonly pair: string;
}

function isPortMap(source: AssignmentSource): source is PortMap {
  return 'assignments' in source && typeof source.assignments === 'function';
}

function entriesOf(source: AssignmentSource): Entry[] {
  const list = isPortMap(source) ? source.assignments() : source;
  const publicTexts = new Map<number, string>();
  const entries: Entry[] = [];
  for (const item of list) {
    const { client, publicAddress } = item;
    const [first, last] =
      'block' in item ? [item.block.first, item.block.last] : [item.firstPort, item.lastPort];
    let publicText = publicTexts.get(publicAddress);
    if (publicText === undefined) {
      publicText = formatIpv4(publicAddress);
      publicTexts.set(publicAddress, publicText);
    }
    const pair = `${formatIpv4(client)} : ${publicText}`;
    entries.push({ client, publicAddress, first, last, pair });
  }
  return entries.sort((a, b) => a.client - b.client);
}

function clientElement(entry: Entry): string {
  // Always a range: nft 1.0.6 refuses a single port as the value of an interval map
  // ("Invalid argument"), though `nft list` prints a one-port range that way.
  return `${entry.pair} . ${entry.first}-${entry.last}`;
}

function otherElement(entry: Entry): string {
  return entry.pair;
}

/** A map declaration; an empty map leaves out `elements`, which nft requires to be non-empty. */
function mapBlock(
  name: string,
  type: string,
  entries: readonly Entry[],
  element: (entry: Entry) => string,
): string[] {
  const lines = [`\tmap ${name} {`, `\t\ttype ${type}`];
  if (entries.length > 0) {
    lines.push('\t\telements = {');
    for (const entry of entries) lines.push(`\t\t\t${element(entry)},`);
    lines.push('\t\t}');
  }
  lines.push('\t}');
  return lines;
}

/**
 * One `nft -f` transaction that replaces our whole table: declaring the table first makes the
 * `delete` succeed whether or not it exists. The map of port blocks has no `flags interval`:
 * with it, changing one element of a large map takes seconds.
 */
export function renderNftTable(map: PortMap, options: NftOptions): string {
  const table = options.table ?? DEFAULT_NFT_TABLE;
  const entries = entriesOf(map);
  const oif = JSON.stringify(options.outInterface);
  const lines = [
    `# traceable-nat: a fixed source port block per VPN client (table ip ${table}, replaced whole)`,
    `table ip ${table}`,
    `delete table ip ${table}`,
    `table ip ${table} {`,
    ...mapBlock('clients', 'ipv4_addr : interval ipv4_addr . inet_service', entries, clientElement),
    ...mapBlock('others', 'ipv4_addr : ipv4_addr', entries, otherElement),
    '\tchain postrouting {',
    // Before eduVPN's masquerade chain (priority srcnat): the first NAT decision wins. The
    // snat-to-map form needs the l4proto match before it (nftables 1.0.6).
    '\t\ttype nat hook postrouting priority srcnat - 10; policy accept;',
    `\t\toifname ${oif} meta l4proto { tcp, udp } snat ip to ip saddr map @clients`,
    `\t\toifname ${oif} meta l4proto != { tcp, udp } snat ip to ip saddr map @others`,
    '\t}',
    '}',
  ];
  return lines.join('\n') + '\n';
}

function elementCommand(verb: string, table: string, map: string, elements: readonly string[]) {
  if (elements.length === 0) return [];
  return [
    `${verb} element ip ${table} ${map} {`,
    ...elements.map((element) => `\t${element},`),
    '}',
  ];
}

/**
 * The element changes that turn `before` into `after` as one `nft -f` transaction: clients
 * whose address or block changed are deleted and added again, vanished clients deleted, new
 * ones added. Empty when nothing changed.
 */
export function renderNftDelta(
  before: AssignmentSource,
  after: AssignmentSource,
  options: NftOptions,
): string {
  const table = options.table ?? DEFAULT_NFT_TABLE;
  const old = new Map(entriesOf(before).map((entry) => [entry.client, entry]));
  const current = entriesOf(after);
  const clientsGone: Entry[] = [];
  const clientsNew: Entry[] = [];
  const othersGone: Entry[] = [];
  const othersNew: Entry[] = [];
  for (const entry of current) {
    const was = old.get(entry.client);
    old.delete(entry.client);
    if (
      was?.first !== entry.first ||
      was.last !== entry.last ||
      was.publicAddress !== entry.publicAddress
    ) {
      if (was) clientsGone.push(was);
      clientsNew.push(entry);
    }
    if (was?.publicAddress !== entry.publicAddress) {
      if (was) othersGone.push(was);
      othersNew.push(entry);
    }
  }
  for (const was of old.values()) {
    clientsGone.push(was);
    othersGone.push(was);
  }
  const byClient = (a: Entry, b: Entry) => a.client - b.client;
  const address = (entry: Entry) => formatIpv4(entry.client);
  const lines = [
    ...elementCommand('delete', table, 'clients', clientsGone.sort(byClient).map(address)),
    ...elementCommand('delete', table, 'others', othersGone.sort(byClient).map(address)),
    ...elementCommand('add', table, 'clients', clientsNew.map(clientElement)),
    ...elementCommand('add', table, 'others', othersNew.map(otherElement)),
  ];
  if (lines.length === 0) return '';
  return [`# traceable-nat: changed clients of table ip ${table}`, ...lines].join('\n') + '\n';
}
