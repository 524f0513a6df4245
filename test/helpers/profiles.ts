/** The small eduVPN profiles the kernel and fault tests build their servers from. */
import type { ProfileSpec } from './sandbox.js';

/** WireGuard 10.42.0.0/24: 253 clients. */
export const ALPHA: ProfileSpec = { id: 'alpha', wireguard: '10.42.0.0/24' };
/** OpenVPN 10.42.1.0/24 over one UDP and one TCP process: 2 x 125 clients. */
export const BETA: ProfileSpec = {
  id: 'beta',
  openvpn: { range: '10.42.1.0/24', udp: [1194], tcp: [1194] },
};
/** WireGuard 10.42.2.0/24: 253 clients. */
export const GAMMA: ProfileSpec = { id: 'gamma', wireguard: '10.42.2.0/24' };
/** WireGuard 10.42.3.0/28: 13 clients. */
export const DELTA: ProfileSpec = { id: 'delta', wireguard: '10.42.3.0/28' };
