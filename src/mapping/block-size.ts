/**
 * How many ports each client gets. `auto` takes the largest power of two that still gives every
 * client a block, so a small installation keeps the original's 256 ports each; when nothing fits
 * the error says how many public addresses to add or which size would fit.
 */
import { TnatError } from '../errors.js';
import { BlockLayout, usableBlocks } from './blocks.js';
import type { NatSettings } from './types.js';

const LARGEST_BLOCK = 32768;

function plural(count: number, one: string, many: string): string {
  return `${count} ${count === 1 ? one : many}`;
}

function blocksPerAddress(settings: NatSettings, blockSize: number): number {
  return usableBlocks(settings.portRange, settings.excludePorts, blockSize).length;
}

/** Powers of two from the largest block down to `smallest`. */
function* sizesDownTo(smallest: number): Generator<number> {
  for (let size = LARGEST_BLOCK; size >= Math.max(smallest, 1); size /= 2) yield size;
}

function describePorts(settings: NatSettings): string {
  const { portRange, excludePorts } = settings;
  const key = settings.configKey ?? 'nat';
  const range = `${key}.portRange ${portRange.first}-${portRange.last}`;
  if (excludePorts.length === 0) return range;
  const excluded = excludePorts.map((block) => `${block.first}-${block.last}`).join(', ');
  return `${range} without ${key}.excludePorts ${excluded}`;
}

function noUsableBlock(settings: NatSettings, blockSize: number): TnatError {
  const nat = settings.configKey ?? 'nat';
  const key = `${nat}.${settings.portsPerClient === 'auto' ? 'minPortsPerClient' : 'portsPerClient'}`;
  const fitting = [...sizesDownTo(1)].find((size) => blocksPerAddress(settings, size) > 0);
  const fix =
    fitting === undefined
      ? `widen ${nat}.portRange or shrink ${nat}.excludePorts`
      : `widen ${nat}.portRange, shrink ${nat}.excludePorts or lower ${key} to ${fitting}`;
  return new TnatError(
    'E_MAPPING',
    `${describePorts(settings)} holds no whole block of ${blockSize} ports: ${fix}`,
  );
}

function tooManyClients(
  settings: NatSettings,
  clients: number,
  layout: BlockLayout,
  sources: string | undefined,
): TnatError {
  const addresses = settings.publicAddresses.length;
  const perAddress = layout.blocks.length;
  const missing = Math.ceil(clients / perAddress) - addresses;
  const nat = settings.configKey ?? 'nat';
  const addAddresses = `add ${plural(missing, 'more public address', 'more public addresses')} to ${nat}.publicAddresses`;
  const fitting = [...sizesDownTo(1)].find(
    (size) => blocksPerAddress(settings, size) * addresses >= clients,
  );
  let lowerSize: string;
  if (fitting === undefined) {
    const atOnePort = blocksPerAddress(settings, 1) * addresses;
    lowerSize = ` (no smaller block fits: even 1 port per client gives only ${atOnePort})`;
  } else if (settings.portsPerClient === 'auto') {
    lowerSize = ` or lower ${nat}.minPortsPerClient from ${settings.minPortsPerClient} to ${fitting}`;
  } else {
    lowerSize = ` or lower ${nat}.portsPerClient to ${fitting}`;
  }
  const given = plural(addresses, 'public address', 'public addresses');
  const verb = addresses === 1 ? 'gives' : 'give';
  return new TnatError(
    'E_MAPPING',
    `${clients} clients need ${clients} blocks but ${given} with ${layout.blockSize} ports per client ${verb} only ${perAddress * addresses}: ${addAddresses}${lowerSize}` +
      (sources === undefined ? '' : `, or shrink the client ranges: they are ${sources}`),
  );
}

/**
 * The block layout every public address uses for `clients` clients. `sources` names the eduVPN
 * files and ranges the clients come from, for the message when they do not fit.
 */
export function chooseBlockLayout(
  settings: NatSettings,
  clients: number,
  sources?: () => string,
): BlockLayout {
  const { portRange, excludePorts, publicAddresses } = settings;
  const sizes =
    settings.portsPerClient === 'auto'
      ? [...sizesDownTo(settings.minPortsPerClient)]
      : [settings.portsPerClient];
  let layout: BlockLayout | undefined;
  for (const size of sizes) {
    layout = new BlockLayout(portRange, excludePorts, size);
    if (layout.blocks.length > 0 && layout.blocks.length * publicAddresses.length >= clients) {
      return layout;
    }
  }
  if (!layout) {
    throw new RangeError(
      `nat.minPortsPerClient ${settings.minPortsPerClient} is above the largest block (${LARGEST_BLOCK})`,
    );
  }
  if (layout.blocks.length === 0) throw noUsableBlock(settings, layout.blockSize);
  throw tooManyClients(settings, clients, layout, sources?.());
}
