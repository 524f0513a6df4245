/** The maps the render tests share. */
import type { PortMap } from '../../src/mapping/types.js';
import { sequentialPortMap } from '../helpers/port-map.js';

/** Three clients on one address, 256 ports each: the seed document's example. */
export function tinyMap(): PortMap {
  return sequentialPortMap({
    clients: [['10.42.0.2', '10.42.0.4']],
    publicAddresses: ['192.0.2.1'],
    blockSize: 256,
  });
}

/**
 * 42 clients in two /16s on two public addresses (31 blocks of 2048 each): deep enough for a
 * tree, and one leaf whose clients use different public addresses.
 */
export function treeMap(): PortMap {
  return sequentialPortMap({
    clients: [
      ['10.42.0.2', '10.42.0.41'],
      ['10.43.7.2', '10.43.7.3'],
    ],
    publicAddresses: ['192.0.2.1', '198.51.100.7'],
    blockSize: 2048,
  });
}

/** A full /16 (network+2 .. broadcast-1) on 17 public addresses with 16 ports each. */
export function slash16Map(): PortMap {
  return sequentialPortMap({
    clients: [['10.42.0.2', '10.42.255.254']],
    publicAddresses: Array.from({ length: 17 }, (_, i) => `198.51.100.${i + 1}`),
    blockSize: 16,
  });
}
