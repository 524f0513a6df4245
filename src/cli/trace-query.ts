/**
 * The fields of a trace query read from text, for `trace`'s options and a batch's columns
 * alike: `name` is how the message names the field (`--port`, or `port` in a batch).
 */
import { TnatError } from '../errors.js';
import type { Address } from '../net/address.js';
import { parseIpv4 } from '../net/ipv4.js';
import { isIpv4Mapped, parseIpv6 } from '../net/ipv6.js';

export function parsePort(text: string, name: string): number {
  const port = Number(text);
  if (!/^\d{1,5}$/.test(text) || port < 1 || port > 65535) {
    throw new TnatError('E_USAGE', `${name} "${text}" is not a port number from 1 to 65535`);
  }
  return port;
}

export function parseProto(text: string, name: string): 'tcp' | 'udp' {
  const proto = text.toLowerCase();
  if (proto === 'tcp' || proto === 'udp') return proto;
  throw new TnatError('E_USAGE', `${name} "${text}" is not tcp or udp`);
}

/**
 * An IPv4 address (number) or an IPv6 address (bigint); `::ffff:a.b.c.d`, the form some
 * reports give an IPv4 address in, is that IPv4 address.
 */
export function parseAddress(text: string, name: string): Address {
  if (!text.includes(':')) {
    const address = parseIpv4(text);
    if (address === undefined)
      throw new TnatError('E_USAGE', `${name} "${text}" is not an IPv4 address`);
    return address;
  }
  const address6 = parseIpv6(text);
  if (address6 === undefined) {
    throw new TnatError(
      'E_USAGE',
      `${name} "${text}" is not an IPv6 address (give it without prefix length or zone, as 2001:db8::1)`,
    );
  }
  return isIpv4Mapped(address6) ? Number(address6 & 0xffffffffn) : address6;
}
