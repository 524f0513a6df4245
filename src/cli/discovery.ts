/** Discovery from the real files, shared by the commands that need the client pools. */
import type { Config } from '../config.js';
import { discoverPools } from '../eduvpn/discover.js';
import type { Discovery } from '../eduvpn/pool.js';
import { fsSourceReader } from '../system/fs-source-reader.js';

export function discover(config: Config): Discovery {
  return discoverPools(config.eduvpn, fsSourceReader);
}
