/**
 * Parses the network and transport headers of a logged packet (what NFLOG
 * hands over, starting at the IP header). Hostile input: the packet may be
 * truncated by the snapshot length, malformed, or forged; the parser never
 * reads past the buffer and returns what it could establish.
 */
import { bytesAddr } from './ip.js';

/** Addresses, protocol and ports of a flow or packet (ports for TCP, UDP, SCTP and DCCP). */
export interface FlowTuple {
  family: 4 | 6;
  /** IP protocol number of the transport (after IPv6 extension headers). */
  proto: number;
  src: bigint;
  dst: bigint;
  sport?: number;
  dport?: number;
}

export interface PacketInfo extends FlowTuple {
  icmpType?: number;
  /** ICMP or ICMPv6 echo requests: the identifier. */
  echoId?: number;
  /** Offset of the transport payload (for UDP: the DNS message), when the headers were complete. */
  payloadOffset?: number;
  /** Total length the IP header claims (the record may hold less). */
  length: number;
  /** TCP: the segment's sequence number (unsigned 32 bits) and flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10). */
  tcpSeq?: number;
  tcpFlags?: number;
}

const IPV6_EXT = new Set([0, 43, 60]); // hop-by-hop, routing, destination options

/** Returns null when not even the IP header is complete. */
export function parsePacket(b: Uint8Array): PacketInfo | null {
  if (b.length < 1) return null;
  const version = (b[0] ?? 0) >> 4;
  let proto: number;
  let l4: number;
  let info: PacketInfo;
  if (version === 4) {
    const ihl = ((b[0] ?? 0) & 0xf) * 4;
    if (ihl < 20 || b.length < ihl) return null;
    proto = b[9] ?? 0;
    info = { family: 4, proto, src: bytesAddr(b, 12, 4), dst: bytesAddr(b, 16, 4), length: ((b[2] ?? 0) << 8) | (b[3] ?? 0) };
    // Non-first fragments carry no transport header.
    const fragOffset = (((b[6] ?? 0) & 0x1f) << 8) | (b[7] ?? 0);
    if (fragOffset !== 0) return info;
    l4 = ihl;
  } else if (version === 6) {
    if (b.length < 40) return null;
    proto = b[6] ?? 0;
    info = { family: 6, proto, src: bytesAddr(b, 8, 16), dst: bytesAddr(b, 24, 16), length: 40 + (((b[4] ?? 0) << 8) | (b[5] ?? 0)) };
    l4 = 40;
    // Skip the common extension headers, a bounded number of times.
    for (let hops = 0; IPV6_EXT.has(proto) && hops < 8; hops++) {
      if (b.length < l4 + 8) return { ...info, proto };
      const next = b[l4] ?? 0;
      l4 += ((b[l4 + 1] ?? 0) + 1) * 8;
      proto = next;
    }
    if (proto === 44) return { ...info, proto }; // fragment header: transport may be elsewhere
    info.proto = proto;
  } else {
    return null;
  }
  if ((proto === 6 || proto === 17 || proto === 132 || proto === 136) && b.length >= l4 + 4) {
    info.sport = ((b[l4] ?? 0) << 8) | (b[l4 + 1] ?? 0);
    info.dport = ((b[l4 + 2] ?? 0) << 8) | (b[l4 + 3] ?? 0);
    if (proto === 17 && b.length >= l4 + 8) info.payloadOffset = l4 + 8;
    if (proto === 6 && b.length >= l4 + 13) {
      const dataOffset = ((b[l4 + 12] ?? 0) >> 4) * 4;
      if (dataOffset >= 20 && b.length >= l4 + dataOffset) {
        info.payloadOffset = l4 + dataOffset;
        // Only with the whole header: a truncated one gives no sequence number, so no reassembly.
        info.tcpSeq = (((b[l4 + 4] ?? 0) << 24) | ((b[l4 + 5] ?? 0) << 16) | ((b[l4 + 6] ?? 0) << 8) | (b[l4 + 7] ?? 0)) >>> 0;
        info.tcpFlags = b[l4 + 13] ?? 0;
      }
    }
  } else if ((proto === 1 || proto === 58) && b.length >= l4 + 1) {
    info.icmpType = b[l4] ?? 0;
    // An echo request's identifier: for a ping socket, the socket's "port" (what the probes key it by).
    if (info.icmpType === (proto === 1 ? 8 : 128) && b.length >= l4 + 8) info.echoId = ((b[l4 + 4] ?? 0) << 8) | (b[l4 + 5] ?? 0);
  }
  return info;
}
