/** Port blocks and the mapping of client addresses onto (public address, port block). */
import type { ClientPool } from '../eduvpn/pool.js';

/** An inclusive range of ports. */
export interface PortBlock {
  readonly first: number;
  readonly last: number;
}

export interface NatSettings {
  /** Public IPv4 addresses as uint32, in the order clients spill over to them. */
  readonly publicAddresses: readonly number[];
  /** The ports that may be handed out (before exclusions). */
  readonly portRange: PortBlock;
  readonly excludePorts: readonly PortBlock[];
  /** A power of two, or `auto`: the largest that fits every client. */
  readonly portsPerClient: number | 'auto';
  /** `auto` never goes below this. */
  readonly minPortsPerClient: number;
  /** The config section the settings come from, for messages: `nat` unless said (`nat6`). */
  readonly configKey?: 'nat' | 'nat6' | undefined;
}

/**
 * One client's binding: the public address and the block of source ports its connections
 * leave from. `A` is the address type: number (uint32) for IPv4, bigint for IPv6. What a
 * ruleset is read back as (ReadAssignment adds the protocols), what the apply compares
 * (Bindings: the same as columns of integers), what an archive's binding index stores.
 */
export interface Binding<A extends number | bigint = number> {
  readonly client: A;
  readonly publicAddress: A;
  readonly firstPort: number;
  readonly lastPort: number;
}

/** A binding as the mapping hands it out, with the pool the client is in. */
export interface Assignment extends Binding {
  readonly pool: ClientPool;
}

/** What the active ruleset says, used to keep every existing client where it is. */
export interface PreviousAssignments {
  readonly blockSize: number;
  /** Each client's binding once, ascending by client (src/mapping/bindings.ts). */
  readonly bindings: AssignmentColumns;
}

export interface PortMap {
  readonly blockSize: number;
  readonly publicAddresses: readonly number[];
  /** The usable blocks of one public address, in hand-out order (top of the range first). */
  readonly blocks: readonly PortBlock[];
  readonly clientCount: number;
  forward(client: number): Assignment | undefined;
  reverse(publicAddress: number, port: number): Assignment | undefined;
  /** Every assignment, in ascending client address order. */
  assignments(): Iterable<Assignment>;
  /** The same as columns, when the map can give them without an object per client. */
  columns?(): AssignmentColumns;
}

/** Every assignment of a map as columns of typed arrays, ascending by client. */
export interface AssignmentColumns {
  readonly count: number;
  /** Client addresses as uint32, ascending (equal ones keep the map's order). */
  readonly client: Uint32Array;
  /** Each client's public address, as an index into `publicAddresses`. */
  readonly publicIndex: Uint32Array;
  readonly publicAddresses: readonly number[];
  /** Each client's port block. */
  readonly firstPort: Int32Array;
  readonly lastPort: Int32Array;
}
