"""Read pcap / pcapng captures (plain, gzip/bz2/xz-compressed, or stdin) into TCP `Batch`es.

Design (speed first, correctness always):

* Records are located in the raw bytes (an mmap for regular uncompressed files, a 4 MiB
  chunked buffer for compressed input and stdin): pcap records by the kernel's `walk_pcap`,
  runs of pcapng enhanced packet blocks by its `walk_epbs`, other pcapng blocks by a Python loop
  that reads block headers with `struct`.
* Each group of up to `size` records is decoded by the kernel `_decode.decode_group`
  (tcpfsm/capture/_decode.py, Cython pure-Python mode, compiled at install; tcpfsm/_kernels.py
  picks the compiled or the plain module): one pass per record, straight from the buffer into
  the column arrays, through the link layer (Ethernet + VLAN tags, SLL, SLL2, raw, NULL, LOOP),
  IPv4, IPv6 without extension headers, the TCP header, its options and its checksum.
* Everything unusual (the other link types of capture/links.py: FDDI, 802.11/radiotap/PPI, NFLOG,
  PPP, Cisco HDLC; 802.3 LLC/SNAP; IPv6 extension headers; fragments of TCP datagrams; every
  encapsulation: MPLS/PPPoE/VN-Tag/E-Tag/PBB/FabricPath/MACsec/NSH ethertypes, IP protocols
  4/41/47, UDP to or from ports 4789/4790/6081/2152/3544 or that may be Teredo on another port)
  is routed to `_parse_one`, a plain scalar parser which is the reference semantics. The kernel
  only ever decides cases where both agree (tests check this by forcing the scalar path
  everywhere, and on random records).

Decisions worth knowing:

* Fragments of TCP datagrams (IPv4; IPv6 with TCP after the fragment header) are reassembled
  (ipfrag.Reassembler, bounded): the segment's row is at the record that completes the datagram
  (tshark shows it there too); every other fragment record is an `ip_fragment` skip.
  `Capture.notes` counts `ip_datagrams_reassembled` and `ip_fragments_unreassembled`. Fragments of
  anything else are not reassembled (a non-first one is `ip_fragment`). A first fragment not
  followed by TCP right after an IPv6 fragment header is still used as before, counted in
  `notes["ip_fragment_first_used"]` with one warning line.
* IPv4 total length 0 (TSO captures on the sending host) and IPv6 payload
  length 0 (jumbograms) take the length from the record's original length; jumbograms
  (more than 65535 bytes of payload) are counted in `notes["ipv6_jumbograms"]`.
* pcapng: the `iface` column is a global interface number, counting the
  interfaces of all sections in order (so it equals the IDB id in the usual
  single-section file). `info.linktypes` / `info.ts_resolution` are per
  interface, in that order. Simple Packet Blocks carry no timestamp: they get
  the previous record's timestamp (0 if none).
* Tunnels (see `_parse_net`): MPLS, PPPoE session, GRE (IP, Ethernet, MPLS, ERSPAN I/II/III),
  VXLAN, VXLAN-GPE, Geneve, GTP-U, IP-in-IP (4in4, 6in4, 4in6, 6in6), Teredo (any port), PBB,
  FabricPath and NSH are unwrapped, at most `_MAX_TUNNEL_DEPTH` (4) deep (deeper:
  "tunnel_too_deep"); VN-Tag, E-Tag and unencrypted MACsec tags are stepped over like VLAN tags
  (encrypted MACsec: "encrypted"); the row describes the innermost TCP/IP packet and its `tunnel`
  column numbers the encapsulation description in `info.tunnels` (0 = none). A record's skip
  reason is the innermost one (an inner ICMP is "icmp"); broken encapsulations are
  "tunnel_error"; a datagram on a tunnel port that is not that tunnel stays "udp".
* TCP checksums (the `csum` column, see batch.py): verified when the whole segment (per the IP
  length) was captured and the packet is not a first fragment; inside tunnels against the innermost
  IP header. The test is the receiver's (sum == 0 modulo 0xffff), so a field of 0xffff where
  0x0000 is due is good. Counts per value go to `info.checksums`.
* `info.first_ts` / `info.last_ts` are the timestamps of the first and last
  packet records in capture order (all records, not only TCP).
"""
from __future__ import annotations

import bz2
import io
import ipaddress
import lzma
import mmap
import os
import struct
import sys
import zlib
from collections import Counter
from typing import Iterator, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._kernels import load as load_kernel
from . import links as _links
from . import ipfrag
from .ipfrag import Reassembler
from .icmp import IcmpErrors, parse_error as _icmp_error
from .batch import (ALL_COLUMNS, CSUM_BAD, CSUM_GOOD, CSUM_UNVERIFIABLE, Batch, CaptureError, CaptureInfo,
                    count_checksums)

__all__ = ["open_capture", "Capture", "SKIP_REASONS"]

_CHUNK = 4 << 20            # stream read size
_RELEASE = 4 << 20          # mapped bytes read before they are handed back to the OS (they count in RSS:
#                             32 MiB was a tenth of the never-closing load peak; a madvise per 4 MiB costs nothing)
_MAX_RECORD = 1 << 26       # a record/block claiming more than 64 MiB is a corrupt header

# The decode kernel: compiled when it could be built (see tcpfsm/_kernels.py).
_kernel = load_kernel("tcpfsm.capture._decode")

# Stable skip reasons (keys of info.skipped), listed and commented where the kernel codes them.
SKIP_REASONS = _kernel.SKIP_REASONS
_OK, _SLOW = 0, 1
_CODE = {r: i + 2 for i, r in enumerate(SKIP_REASONS)}

_ETH_LT = {1: (14, 12), 113: (16, 14), 276: (20, 0)}   # linktype -> (header length, ethertype offset)
_RAW_LT = (101, 12, 14)
_NULL_LT, _LOOP_LT = 0, 108
_IPV4_LT, _IPV6_LT = 228, 229
_SUPPORTED_LT = set(_ETH_LT) | set(_RAW_LT) | {_NULL_LT, _LOOP_LT, _IPV4_LT, _IPV6_LT} | _links.SLOW_LINKTYPES
_VLAN = (0x8100, 0x88A8, 0x9100)
_AF6 = (24, 28, 30)
_MAPPED = b"\x00" * 10 + b"\xff\xff"
_V6_EXT = frozenset((0, 43, 60, 44, 51, 135, 139, 140))
_TUNNEL_UDP = {4789: "vxlan", 4790: "vxlan-gpe", 6081: "geneve", 2152: "gtpu", 3544: "teredo"}
# Ethertypes of the 802.1/Cisco tags and headers unwrapped by _parse_net (besides VLAN tags, MPLS, PPPoE)
_ET_VNTAG, _ET_FABRICPATH, _ET_ETAG, _ET_PBB, _ET_MACSEC, _ET_NSH = 0x8926, 0x8903, 0x893F, 0x88E7, 0x88E5, 0x894F
_NSH_NEXT = {1: 0x0800, 2: 0x86DD, 3: 0x6558, 4: _ET_NSH, 5: 0x8847}   # NSH / VXLAN-GPE next protocol
_MAX_TUNNEL_DEPTH = 4
_MAX_TUNNELS = 65535      # the tunnel column is uint16; later new descriptions share the last entry
_NO_IFACE = -1           # pseudo link type for pcapng blocks with an unknown interface id

_PCAP_MAGIC = {  # first 4 bytes -> (byte order, fraction multiplier to ns, resolution)
    b"\xd4\xc3\xb2\xa1": ("<", 1000, "us"),
    b"\xa1\xb2\xc3\xd4": (">", 1000, "us"),
    b"\x4d\x3c\xb2\xa1": ("<", 1, "ns"),
    b"\xa1\xb2\x3c\x4d": (">", 1, "ns"),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"

_u16 = struct.Struct("!H").unpack_from
_tcp_hdr = struct.Struct("!HHIIHH").unpack_from


# --------------------------------------------------------------------------------------------
# scalar reference parser
# --------------------------------------------------------------------------------------------

def _link(data, lt: int):
    """-> (l3 offset, ethertype) or a skip-reason string."""
    n = len(data)
    if lt in _ETH_LT:
        hl, eto = _ETH_LT[lt]
        if n < hl:
            return "truncated_link_header"
        et = (data[eto] << 8) | data[eto + 1]
        off = hl
        while et in _VLAN:
            if n < off + 4:
                return "truncated_link_header"
            et = (data[off + 2] << 8) | data[off + 3]
            off += 4
        return off, et
    if lt in _RAW_LT:
        if n < 1:
            return "truncated_link_header"
        v = data[0] >> 4
        return (0, 0x0800) if v == 4 else (0, 0x86DD) if v == 6 else "malformed_ip"
    if lt == _IPV4_LT or lt == _IPV6_LT:
        if n < 1:
            return "truncated_link_header"
        return 0, 0x0800 if lt == _IPV4_LT else 0x86DD
    if lt == _NULL_LT or lt == _LOOP_LT:
        if n < 4:
            return "truncated_link_header"
        be = int.from_bytes(data[0:4], "big")
        if lt == _NULL_LT:
            le = int.from_bytes(data[0:4], "little")
            af = be if le > 0xFFFF else le     # written in the capturing host's byte order
        else:
            af = be                             # LOOP: always network byte order
        if af == 2:
            return 4, 0x0800
        if af in _AF6:
            return 4, 0x86DD
        return "non_ip"
    if lt == _NO_IFACE:
        return "unknown_interface"
    if lt in _links.SLOW_LINKTYPES:
        return _links.link_other(data, lt)
    return "unsupported_linktype"


def _parse_one(data, lt: int, orig: int):
    """Decode one record. Returns a skip reason (str) or a tuple
    (family, src16, dst16, sport, dport, flags, seq, ack, win, plen, mss, wscale,
     sack_ok, has_ts, tsval, tsecr, ip_len, first_fragment, tunnel, csum, ttl, ipid) where tunnel is "" or the
    description of the encapsulation(s) the TCP segment was found in (see `_parse_net`), csum the
    `csum` column value (batch.CSUM_*) and ttl the innermost IP header's TTL / hop limit."""
    r = _link(data, lt)
    if type(r) is str:
        return r
    return _parse_net(data, r[0], r[1], orig, 0 if lt == 1 else None)


def _ip4s(b) -> str:
    return "%d.%d.%d.%d" % tuple(b)


def _ip6s(b) -> str:
    return str(ipaddress.IPv6Address(bytes(b)))


def _hp(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _macs(data, eth) -> str:
    """' src->dst' MAC addresses of the Ethernet header at `eth` (or '' when there is none)."""
    if eth is None:
        return ""
    return " " + "->".join(":".join("%02x" % x for x in bytes(data[o:o + 6])) for o in (eth + 6, eth))


def _eth(data, off: int):
    """Ethernet II (+ VLAN tags) at `off` -> (l3 offset, ethertype) or a skip reason."""
    n = len(data)
    if n < off + 14:
        return "truncated_link_header"
    et = (data[off + 12] << 8) | data[off + 13]
    o = off + 14
    while et in _VLAN:
        if n < o + 4:
            return "truncated_link_header"
        et = (data[o + 2] << 8) | data[o + 3]
        o += 4
    return o, et


def _fp_addr(data, o: int) -> str:
    """A FabricPath outer address (switch id, sub-switch id, LID) as Wireshark writes it: 'b00.02.0000'."""
    return f"{((data[o + 1] & 0xF) << 8) | data[o + 2]:03x}.{data[o + 3]:02x}.{(data[o + 4] << 8) | data[o + 5]:04x}"


def _by_nibble(data, o: int):
    """Inner packet identified by its IP version nibble (MPLS, GTP-U) -> ethertype or a skip reason."""
    if len(data) <= o:
        return "truncated_ip_header"
    v = data[o] >> 4
    return 0x0800 if v == 4 else 0x86DD if v == 6 else "non_ip"


def _udp_tunnel(data, t: int, port: int, src: str, dst: str, sport: int, dport: int):
    """The UDP payload at t + 8 as the tunnel registered on `port` -> (desc, inner offset,
    ethertype, inner-is-Ethernet) / a skip reason / None when the payload is not that tunnel
    (then the datagram is plain UDP)."""
    n = len(data)
    o = t + 8
    kind = _TUNNEL_UDP[port]
    ep = f"{_hp(src, sport)}->{_hp(dst, dport)}"
    if kind == "vxlan":
        if n < o + 8:
            return None
        vni = int.from_bytes(data[o + 4:o + 7], "big")
        return f"vxlan {ep} vni {vni}", o + 8, 0, True
    if kind == "geneve":
        if n < o + 8 or data[o] >> 6:
            return None
        ptype = _u16(data, o + 2)[0]
        vni = int.from_bytes(data[o + 4:o + 7], "big")
        i = o + 8 + (data[o] & 0x3F) * 4
        if n < i:
            return "tunnel_error"
        d = f"geneve {ep} vni {vni}"
        if ptype == 0x6558:
            return d, i, 0, True
        return d, i, ptype, False
    if kind == "gtpu":
        if n < o + 8:
            return None
        fl = data[o]
        if fl >> 5 != 1 or not fl & 0x10 or data[o + 1] != 0xFF:   # GTPv1, G-PDU only
            return None
        teid = struct.unpack_from("!I", data, o + 4)[0]
        i = o + 8
        if fl & 7:                                                  # E, S or PN: 4 more bytes
            if n < i + 4:
                return "tunnel_error"
            nxt = data[i + 3] if fl & 4 else 0
            i += 4
            while nxt:                                              # extension header chain
                if n < i + 1 or data[i] == 0 or n < i + data[i] * 4:
                    return "tunnel_error"
                el = data[i] * 4
                nxt = data[i + el - 1]
                i += el
        e = _by_nibble(data, i)
        if type(e) is str:
            return e
        return f"gtpu {ep} teid {teid}", i, e, False
    if kind == "vxlan-gpe":                 # flags (version 0), reserved, next protocol, VNI, reserved
        if n < o + 8 or data[o] & 0x30:
            return None
        vni = int.from_bytes(data[o + 4:o + 7], "big")
        e = _NSH_NEXT.get(data[o + 3])
        if e is None:
            return "non_ip"
        d = f"vxlan-gpe {ep} vni {vni}"
        return (d, o + 8, 0, True) if e == 0x6558 else (d, o + 8, e, False)
    return _teredo(data, t, ep, False)


def _teredo(data, t: int, ep: str, any_port: bool):
    """The UDP payload at t + 8 as Teredo (RFC 4380, 5.1.1): an optional authentication indicator
    (0x0001, id length, auth length, id, auth value, 8-byte nonce, confirmation byte), an optional
    origin indication (0x0000, port, address: 8 bytes), then IPv6 -> (desc, inner offset, 0x86DD,
    False) or None. On a port other than 3544 (`any_port`) the IPv6 header must also be complete and
    its payload length fill the UDP length exactly (the rule of Zeek's and Suricata's detection)."""
    n = len(data)
    i = t + 8
    if n >= i + 4 and data[i] == 0 and data[i + 1] == 1:
        i += 4 + data[i + 2] + data[i + 3] + 9
    if n >= i + 8 and data[i] == 0 and data[i + 1] == 0:
        i += 8
    if n <= i or data[i] >> 4 != 6:
        return None
    if any_port and (n < i + 40 or _u16(data, t + 4)[0] != i - t + 40 + _u16(data, i + 4)[0]):
        return None
    return f"teredo {ep}", i, 0x86DD, False


def _parse_net(data, l3: int, et: int, orig: int, eth):
    """Decode from the network layer (`et` at offset `l3`; `eth` = offset of the Ethernet header
    in front of it, or None) down to TCP, unwrapping encapsulations up to `_MAX_TUNNEL_DEPTH` deep:
    802.3 LLC/SNAP, VN-Tag, E-Tag, MACsec (tags), MPLS, PPPoE session, PBB, FabricPath, NSH, GRE
    (IP, Ethernet, MPLS, NSH; ERSPAN I/II/III), IP-in-IP (4in4, 6in4, 4in6, 6in6), and on UDP:
    VXLAN 4789, VXLAN-GPE 4790, Geneve 6081, GTP-U 2152, Teredo 3544 (the lower of the two
    ports is tried first, as Wireshark does; a payload that does not parse as the tunnel leaves
    the datagram a plain "udp" skip) and Teredo on any other port when the IPv6 header fills the
    datagram exactly. The skip reason of an encapsulated record is the innermost one; an
    encapsulation that is recognised but truncated, malformed or an unsupported variant (GRE
    version != 0 or with routing) is "tunnel_error", one nested too deep "tunnel_too_deep". A
    fragment of a TCP datagram comes back as a `_Frag` (for `_decode`'s reassembly); an outer IP
    fragment carrying a tunnel is an "ip_fragment" (not reassembled)."""
    n = len(data)
    tun: list[str] = []
    while True:
        if len(tun) > _MAX_TUNNEL_DEPTH:
            return "tunnel_too_deep"
        first_frag = False
        if et == 0x0800:
            if n < l3 + 20:
                return "truncated_ip_header"
            v = data[l3]
            ihl = (v & 15) * 4
            if v >> 4 != 4 or ihl < 20:
                return "malformed_ip"
            if n < l3 + ihl:
                return "truncated_ip_header"
            tot = _u16(data, l3 + 2)[0]
            fo = _u16(data, l3 + 6)[0]
            proto = data[l3 + 9]
            if tot == 0:                      # TSO: length left to the NIC
                tot = orig - l3
            if tot < ihl:
                return "malformed_ip"
            if fo & 0x3FFF and proto == 6:    # a fragment of a TCP datagram: reassembled by _decode
                if n < l3 + tot:
                    return "ip_fragment"      # (cut by the snaplen: cannot be reassembled)
                return _Frag((4, bytes(data[l3 + 12:l3 + 20]), _u16(data, l3 + 4)[0], tuple(tun)),
                             (fo & 0x1FFF) * 8, bool(fo & 0x2000), bytes(data[l3 + ihl:l3 + tot]),
                             bytes(data[l3:l3 + ihl]), tun)
            if fo & 0x1FFF:
                return "ip_fragment"
            first_frag = bool(fo & 0x2000)
            fam = 4
            ttl = data[l3 + 8]
            ipid = _u16(data, l3 + 4)[0]
            src = _MAPPED + bytes(data[l3 + 12:l3 + 16])
            dst = _MAPPED + bytes(data[l3 + 16:l3 + 20])
            t = l3 + ihl
            tcplen = tot - ihl
            iplen = tot
        elif et == 0x86DD:
            if n < l3 + 40:
                return "truncated_ip_header"
            if data[l3] >> 4 != 6:
                return "malformed_ip"
            pl = _u16(data, l3 + 4)[0]
            if pl == 0:                       # jumbogram / TSO
                pl = max(orig - l3 - 40, 0)
            proto = data[l3 + 6]
            fam = 6
            ttl = data[l3 + 7]                # the hop limit
            ipid = 0                          # (IPv6: no Identification outside a fragment header)
            src = bytes(data[l3 + 8:l3 + 24])
            dst = bytes(data[l3 + 24:l3 + 40])
            t = l3 + 40
            tcplen = pl
            nh_at = l3 + 6                    # the byte that holds `proto`
            while proto in _V6_EXT:           # extension headers we can walk
                if n < t + 8:
                    return "truncated_ip_header"
                if proto == 44 and data[t] == 6 and _u16(data, t + 2)[0] & 0xFFF9:   # TCP fragment
                    end = l3 + 40 + pl
                    if n < end or end < t + 8:
                        return "ip_fragment"
                    fo = _u16(data, t + 2)[0]
                    hdr = bytearray(data[l3:t])
                    hdr[nh_at - l3] = 6
                    return _Frag((6, src + dst, struct.unpack_from("!I", data, t + 4)[0], tuple(tun)),
                                 fo & 0xFFF8, bool(fo & 1), bytes(data[t + 8:end]), bytes(hdr), tun)
                nh_at = t
                if proto == 44:
                    fo = _u16(data, t + 2)[0]
                    if fo & 0xFFF8:
                        return "ip_fragment"
                    first_frag = bool(fo & 1)
                    hl = 8
                elif proto == 51:
                    hl = (data[t + 1] + 2) * 4
                else:
                    hl = (data[t + 1] + 1) * 8
                proto = data[t]
                t += hl
                tcplen -= hl
                if tcplen < 0:
                    return "malformed_ip"
            iplen = 40 + pl
        elif et == 0x0806 or et == 0x8035:
            return "arp"
        elif et == 0x8847 or et == 0x8848:   # MPLS label stack
            labels = []
            o = l3
            while True:
                if n < o + 4 or len(labels) >= 16:
                    return "tunnel_error"
                lab = struct.unpack_from("!I", data, o)[0]
                labels.append(str(lab >> 12))
                o += 4
                if lab & 0x100:
                    break
            tun.append(f"mpls{_macs(data, eth)} labels {','.join(labels)}")
            if n > o and data[o] >> 4 == 0:   # pseudowire control word, then Ethernet
                r = _eth(data, o + 4)
                if type(r) is str:
                    return r
                eth = o + 4
                l3, et = r
                continue
            e = _by_nibble(data, o)
            if type(e) is str:
                return e
            l3, et, eth = o, e, None
            continue
        elif et <= 1500:                      # 802.3 length field: LLC/SNAP (RFC 1042) carries the type
            r = _links.llc_snap(data, l3)
            if type(r) is str:
                return r
            l3, et = r
            continue
        elif et == _ET_VNTAG or et == _ET_ETAG:   # VN-Tag (4 bytes), 802.1BR E-Tag (6): tags, like VLAN's
            o = l3 + (4 if et == _ET_VNTAG else 6)
            if n < o + 2:
                return "truncated_link_header"
            l3, et = o + 2, _u16(data, o)[0]
            continue
        elif et == _ET_MACSEC:                # 802.1AE SecTAG: TCI/AN, SL, PN (+ SCI when TCI.SC)
            if n < l3 + 6:
                return "truncated_link_header"
            tci = data[l3]
            if tci & 0x0C:                    # E (encrypted) or C (changed text): no ethertype to read
                return "encrypted"
            o = l3 + (14 if tci & 0x20 else 6)
            if n < o + 2:
                return "truncated_link_header"
            l3, et = o + 2, _u16(data, o)[0]
            continue
        elif et == _ET_PBB or et == _ET_FABRICPATH:   # MAC-in-MAC: 802.1ah I-TAG / Cisco FabricPath tag
            if et == _ET_PBB:                 # I-TAG: PCP, DEI, UCA, reserved, 24-bit I-SID
                if n < l3 + 4:
                    return "tunnel_error"
                tun.append(f"pbb{_macs(data, eth)} isid {int.from_bytes(data[l3 + 1:l3 + 4], 'big')}")
                o = l3 + 4
            else:                             # FTag (10 bits), TTL (6); the outer addresses are switch ids
                if n < l3 + 2:
                    return "tunnel_error"
                ends = "" if eth is None else f" {_fp_addr(data, eth + 6)}->{_fp_addr(data, eth)}"
                tun.append(f"fabricpath{ends} ftag {_u16(data, l3)[0] >> 6}")
                o = l3 + 2
            r = _eth(data, o)
            if type(r) is str:
                return r
            eth = o
            l3, et = r
            continue
        elif et == _ET_NSH:                   # Network Service Header (RFC 8300)
            if n < l3 + 8 or data[l3] >> 6:
                return "tunnel_error"
            hl = (data[l3 + 1] & 0x3F) * 4
            nxt = _NSH_NEXT.get(data[l3 + 3])
            if hl < 8 or n < l3 + hl:
                return "tunnel_error"
            spi = int.from_bytes(data[l3 + 4:l3 + 7], "big")
            tun.append(f"nsh{_macs(data, eth)} spi {spi} si {data[l3 + 7]}")
            if nxt is None:
                return "non_ip"
            o = l3 + hl
            if nxt == 0x6558:
                r = _eth(data, o)
                if type(r) is str:
                    return r
                eth = o
                l3, et = r
            else:
                l3, et, eth = o, nxt, None
            continue
        elif et == 0x6558:                    # transparent Ethernet bridging (GRE / NSH payloads)
            r = _eth(data, l3)
            if type(r) is str:
                return r
            eth = l3
            l3, et = r
            continue
        elif et == 0x8864:                    # PPPoE session stage
            if n < l3 + 8 or data[l3] != 0x11 or data[l3 + 1] != 0:
                return "tunnel_error"
            sid = _u16(data, l3 + 2)[0]
            tun.append(f"pppoe{_macs(data, eth)} session 0x{sid:04x}")
            if data[l3 + 6] & 1:              # protocol field compressed to one byte
                pp, o = data[l3 + 6], l3 + 7
            else:
                pp, o = _u16(data, l3 + 6)[0], l3 + 8
            if pp == 0x21:
                et = 0x0800
            elif pp == 0x57:
                et = 0x86DD
            else:
                return "non_ip"
            l3, eth = o, None
            continue
        else:
            return "non_ip"

        if proto == 6:
            break
        # ---- an encapsulation inside IP?
        if proto in (4, 41, 47) or proto == 17 and n >= t + 8:
            s_txt = _ip4s(src[12:]) if fam == 4 else _ip6s(src)
            d_txt = _ip4s(dst[12:]) if fam == 4 else _ip6s(dst)
            ep = f"{s_txt}->{d_txt}"
            if proto == 17:
                sp, dp = _u16(data, t)[0], _u16(data, t + 2)[0]
                r = None
                for port in sorted({sp, dp}):
                    if port in _TUNNEL_UDP:
                        r = _udp_tunnel(data, t, port, s_txt, d_txt, sp, dp)
                        if r is not None:
                            break
                if r is None:                 # Teredo on any port (the kernel's _teredo_like, checked)
                    r = _teredo(data, t, f"{_hp(s_txt, sp)}->{_hp(d_txt, dp)}", True)
                if r is None:
                    return "udp"
                if first_frag:
                    return "ip_fragment"
                if type(r) is str:
                    return r
                d, o, e, is_eth = r
            elif proto == 47:
                if first_frag:
                    return "ip_fragment"
                if n < t + 4:
                    return "tunnel_error"
                fl, ptype = _u16(data, t)[0], _u16(data, t + 2)[0]
                if fl & 0x4007:               # routing present / version != 0 (e.g. PPTP)
                    return "tunnel_error"
                o = t + 4 + (4 if fl & 0x8000 else 0)
                key = None
                if fl & 0x2000:
                    if n < o + 4:
                        return "tunnel_error"
                    key = struct.unpack_from("!I", data, o)[0]
                    o += 4
                if fl & 0x1000:
                    o += 4
                if n < o:
                    return "tunnel_error"
                d = f"gre {ep}" + (f" key {key}" if key is not None else "")
                is_eth, e = False, ptype
                if ptype == 0x6558:
                    is_eth = True
                elif ptype == 0x88BE:
                    if fl & 0x1000:           # ERSPAN type II: 8-byte header
                        if n < o + 8 or data[o] >> 4 != 1:
                            return "tunnel_error"
                        d = f"erspan2 {ep} session {_u16(data, o + 2)[0] & 0x3FF}"
                        o += 8
                    else:                     # ERSPAN type I: no header
                        d = f"erspan1 {ep}"
                    is_eth = True
                elif ptype == 0x22EB:         # ERSPAN type III: 12 bytes (+ 8 platform specific)
                    if n < o + 12 or data[o] >> 4 != 2:
                        return "tunnel_error"
                    w = _u16(data, o + 10)[0]
                    d = f"erspan3 {ep} session {_u16(data, o + 2)[0] & 0x3FF}"
                    o += 20 if w & 1 else 12
                    if (w >> 10) & 0x1F:      # frame type other than Ethernet
                        tun.append(d)
                        return "non_ip"
                    is_eth = True
            else:
                if first_frag:
                    return "ip_fragment"
                kind = {(4, 4): "ipip", (4, 41): "6in4", (6, 4): "4in6", (6, 41): "6in6"}[fam, proto]
                d, o, e, is_eth = f"{kind} {ep}", t, 0x0800 if proto == 4 else 0x86DD, False
            tun.append(d)
            if is_eth:
                r = _eth(data, o)
                if type(r) is str:
                    return r
                eth = o
                l3, et = r
            else:
                l3, et, eth = o, e, None
            continue
        if proto == 17:
            return "udp"
        if proto == 1 and fam == 4:       # (ICMP inside IPv6 or ICMPv6 inside IPv4 is nonsense: other)
            return "icmp"
        if proto == 58 and fam == 6:
            return "icmpv6"
        return "other_ip_proto"

    if n < t + 20:
        return "truncated_tcp_header"
    sport, dport, seq, ack, offfl, win = _tcp_hdr(data, t)
    doff = (offfl >> 12) * 4
    if doff < 20 or tcplen < doff:
        return "malformed_tcp"
    mss, ws, sok, hts, tsv, tse = 0, -1, False, False, 0, 0
    i = t + 20
    end = min(t + doff, n)
    while i < end:
        k = data[i]
        if k == 0:
            break
        if k == 1:
            i += 1
            continue
        if i + 1 >= end:
            break
        ln = data[i + 1]
        if ln < 2 or i + ln > end:
            break
        if k == 2 and ln == 4:
            mss = _u16(data, i + 2)[0]
        elif k == 3 and ln == 3:
            ws = min(data[i + 2], 127)
        elif k == 4 and ln == 2:
            sok = True
        elif k == 8 and ln == 10:
            hts = True
            tsv, tse = struct.unpack_from("!II", data, i + 2)
        i += ln
    if first_frag or n < t + tcplen:
        cs = CSUM_UNVERIFIABLE
    else:
        cs = CSUM_GOOD if _csum_ok(data, t, tcplen, src, dst) else CSUM_BAD
    return (fam, src, dst, sport, dport, offfl & 0x1FF, seq, ack, win, tcplen - doff,
            mss, ws, sok, hts, tsv, tse, iplen, first_frag, " / ".join(tun), cs, ttl, ipid)


JUMBO_IP_LEN = 40 + 0xFFFF          # an IPv6 packet longer than this is a jumbogram (RFC 2675)


def count_jumbograms(notes: Counter, cols: dict) -> None:
    """notes["ipv6_jumbograms"]: TCP segments in IPv6 jumbograms (payload length 0 in the header, the
    length taken from the record's original length, more than 65535 bytes): decoded, and counted because
    no ordinary path produces them (tshark and Zeek report them too)."""
    il = cols["ip_len"]
    if len(il) and int(il.max()) > JUMBO_IP_LEN:
        k = int(np.count_nonzero((il > JUMBO_IP_LEN) & (cols["family"] == 6)))
        if k:
            notes["ipv6_jumbograms"] += k


def fragment_notes(frags: Reassembler, notes: Counter, warnings: list) -> None:
    """At the end of a capture, as notes: datagrams reassembled, and fragments of TCP datagrams never used
    (a piece missing, or dropped by the store's memory bound). Each fragment record is already counted as
    an "ip_fragment" skip (the row is the completing record's), so no warning line is added; one is
    only when the memory bound dropped fragments."""
    if frags.reassembled:
        notes["ip_datagrams_reassembled"] = frags.reassembled
    held = frags.held()
    if held:
        notes["ip_fragments_unreassembled"] = held
    if frags.evicted:
        warnings.append(f"{frags.evicted} IP fragment(s) dropped: more than {ipfrag.MAX_DATAGRAMS} datagrams "
                        f"or {ipfrag.MAX_BYTES >> 20} MiB waiting for their other fragments")


class _Frag(NamedTuple):
    """_parse_net's answer for a fragment of a TCP datagram (IPv4, or IPv6 with TCP right after the
    fragment header): what ipfrag.Reassembler.add takes, and the encapsulations around it."""
    key: tuple
    offset: int
    more: bool
    payload: bytes
    header: bytes                     # IPv4 header / IPv6 header + extension headers before the fragment one
    tun: list


def _reassembled(f: _Frag, header: bytes, payload: bytes):
    """The datagram rebuilt from its fragments (header of the first, lengths set, IPv4 offset/MF cleared)
    and decoded as a whole packet: a row tuple (its tunnel text after the fragments' own) or a skip reason."""
    if f.key[0] == 4:
        tot = len(header) + len(payload)
        if tot > 0xFFFF:
            return "malformed_ip"
        pkt = header[:2] + struct.pack("!H", tot) + header[4:6] + b"\0\0" + header[8:] + payload
        r = _parse_net(pkt, 0, 0x0800, tot, None)
    else:
        pl = len(header) - 40 + len(payload)
        if pl > 0xFFFF:
            return "malformed_ip"
        pkt = header[:4] + struct.pack("!H", pl) + header[6:] + payload
        r = _parse_net(pkt, 0, 0x86DD, len(pkt), None)
    if type(r) is _Frag:              # the rebuilt datagram is itself a fragment of another: not reassembled
        return "ip_fragment"
    if type(r) is not tuple or not f.tun:
        return r
    return r[:18] + (" / ".join(f.tun + ([r[18]] if r[18] else [])),) + r[19:]


def _csum_ok(data, t: int, tcplen: int, src: bytes, dst: bytes) -> bool:
    """The TCP checksum of the segment data[t:t + tcplen] (fully captured) with the pseudo-header of
    `src`/`dst` (16 bytes; IPv4 as ::ffff:a.b.c.d, whose 0xffff word is 0 modulo 0xffff) verifies.
    Ones' complement arithmetic: the sum of all 16-bit big-endian words, the pseudo-header's and the
    segment's (checksum field included, an odd last byte padded with a zero), is 0 modulo 0xffff
    (the folded sum is then 0xffff: never 0, the protocol word 6 is in it). This is the receiver's test
    (Linux, Zeek): a field of 0xffff where 0x0000 is due passes it (Linux senders do write that, about one
    segment in 65536; Wireshark flags it "should be 0x0000", the tshark engine maps that back)."""
    seg = bytes(data[t:t + tcplen])
    if tcplen & 1:
        seg += b"\0"
    total = int.from_bytes(src, "big") + int.from_bytes(dst, "big") + 6 + tcplen
    # sum of 16-bit words == the concatenation taken as one big number, modulo 0xffff (2^16 = 1 mod 0xffff)
    total += int.from_bytes(seg, "big")
    return total % 0xFFFF == 0


# --------------------------------------------------------------------------------------------
# decoding a group of records: the kernel, then the scalar parser for what it leaves
# --------------------------------------------------------------------------------------------

_FORCE_SCALAR = False     # tests flip this to check the kernel against _parse_one on every record
_SCALAR_COLS = ("family", "src", "dst", "sport", "dport", "flags", "seq", "ack", "win", "plen",
                "mss", "wscale", "sack_ok", "has_ts", "tsval", "tsecr", "ip_len")
# The columns the kernel fills, in its decode_group argument order after the source arrays.
_KERNEL_COLS = ("family", "src", "dst", "sport", "dport", "flags", "seq", "ack", "win", "plen", "mss", "wscale",
                "sack_ok", "has_ts", "tsval", "tsecr", "ip_len", "csum", "ttl", "ipid")
_LT_COLUMNS: dict = {}    # link type -> a read-only column of it (pcap: every record's), sliced per group


def _same_lt(lt: int, n: int) -> np.ndarray:
    """A read-only int64 column of n copies of lt (one kept per link type, grown as needed: not refilled per
    group)."""
    a = _LT_COLUMNS.get(lt)
    if a is None or len(a) < n:
        a = np.full(max(n, 1024), lt, np.int64)
        a.flags.writeable = False
        _LT_COLUMNS[lt] = a
    return a[:n]


def _decode(bufnp, buf, doffs, caps, origs, lt_rows, lts, tunnels=None, frags=None):
    """Decode one group. Returns (rows, cols, st, slow_reasons, first_frags):
    rows = record positions (within the group) that produced TCP segments, cols = their
    column arrays (without index/ts/iface, in their batch dtypes), st = per-record status codes
    (_OK, _SLOW or a skip code counted by the caller), slow_reasons = Counter from the scalar path.
    `tunnels` (description -> number, "" -> 0) is the capture's tunnel table; new descriptions are
    added to it. `buf` holds the records (bytes, mmap: anything with the buffer protocol); `bufnp`
    (a uint8 view of it) is not needed any more and kept for callers."""
    if tunnels is None:
        tunnels = {"": 0}
    if frags is None:                 # (a caller without a capture-wide store: fragments within this group)
        frags = Reassembler()
    n = len(doffs)
    doffs = np.ascontiguousarray(doffs, np.int64)
    caps = np.ascontiguousarray(caps, np.int64)
    origs = np.ascontiguousarray(origs, np.int64)
    lt_arr = _same_lt(int(lt_rows), n) if np.ndim(lt_rows) == 0 else np.ascontiguousarray(lt_rows, np.int64)
    st = np.empty(n, np.int8)
    rows = np.empty(n, np.int64)
    cols = {k: np.empty((n, 16) if k in ("src", "dst") else n, np.uint8 if k in ("src", "dst") else ALL_COLUMNS[k])
            for k in _KERNEL_COLS}
    if _FORCE_SCALAR:
        st[:] = _SLOW
        m = 0
    else:
        views = [cols[k].view(np.uint8) if cols[k].dtype == np.bool_ else cols[k] for k in _KERNEL_COLS]
        m = _kernel.decode_group(buf, doffs, caps, origs, lt_arr, st, rows, *views)
    idx = rows[:m]
    cols = {k: (a[:m].view("V16").reshape(m) if a.ndim == 2 else a[:m]) for k, a in cols.items()}
    cols["tunnel"] = np.zeros(m, ALL_COLUMNS["tunnel"])

    # ---- scalar path
    slow_reasons: Counter = Counter()
    first_frags = 0
    slow = np.nonzero(st == _SLOW)[0]
    if slow.size:
        mv = memoryview(buf)
        srows, svals = [], []
        for i in slow.tolist():
            s = int(doffs[i])
            r = _parse_one(mv[s:s + int(caps[i])], int(lt_arr[i]), int(origs[i]))
            if type(r) is _Frag:          # held until its datagram is complete, then decoded whole here
                whole = frags.add(r.key, r.offset, r.more, r.payload, r.header)
                r = "ip_fragment" if whole is None else _reassembled(r, *whole)
            if type(r) is str:
                if r == "icmp" or r == "icmpv6":
                    st[i] = _CODE[r]      # counted with the kernel's, and looked at by icmp_rows like them
                else:
                    slow_reasons[r] += 1
            else:
                srows.append(i)
                svals.append(r)
                first_frags += r[17]
                if r[18] and r[18] not in tunnels:
                    tunnels[r[18]] = min(len(tunnels), _MAX_TUNNELS)
        if srows:
            cols2 = list(zip(*svals))
            extra = {}
            for j, name in enumerate(_SCALAR_COLS):
                if name in ("src", "dst"):
                    extra[name] = np.frombuffer(b"".join(cols2[j]), "V16")
                else:
                    extra[name] = np.array(cols2[j], dtype=np.int64 if name not in ("sack_ok", "has_ts") else bool)
            extra["tunnel"] = np.array([tunnels[d] for d in cols2[18]], np.int64)
            extra["csum"] = np.array(cols2[19], np.int64)
            extra["ttl"] = np.array(cols2[20], np.int64)
            extra["ipid"] = np.array(cols2[21], np.int64)
            rows = np.concatenate([idx, np.array(srows, np.int64)])
            order = np.argsort(rows, kind="stable")
            idx = rows[order]
            cols = {k: np.concatenate([cols[k], extra[k].astype(cols[k].dtype)])[order] for k in cols}
    return idx, cols, st, slow_reasons, first_frags


_ICMP_CODES = (_CODE["icmp"], _CODE["icmpv6"])


def icmp_rows(table: IcmpErrors, buf, doffs, caps, lt_rows, index, ts, st) -> None:
    """Add the group's ICMP errors quoting TCP to `table`: only records classified as ICMP / ICMPv6 (by the
    kernel, or by the scalar path for the link types and frames it leaves there; still counted as those
    skips: they are not TCP segments) are looked at, so the TCP path pays one vectorized comparison per
    group."""
    pick = np.flatnonzero((st == _ICMP_CODES[0]) | (st == _ICMP_CODES[1]))
    if not pick.size:
        return
    mv = memoryview(buf)
    lt_arr = np.broadcast_to(np.asarray(lt_rows, np.int64), (len(st),))
    for i in pick.tolist():
        s = int(doffs[i])
        data = mv[s:s + int(caps[i])]
        r = _link(data, int(lt_arr[i]))
        if type(r) is not str and r[1] <= 1500:      # an 802.3 length field: the type is in LLC/SNAP
            r = _links.llc_snap(data, r[0])
        if type(r) is str:
            continue
        row = _icmp_error(data, r[0], r[1])
        if row is not None:
            table.add(int(index[i]), int(ts[i]), row)


# --------------------------------------------------------------------------------------------
# input plumbing
# --------------------------------------------------------------------------------------------

class _Prefixed(io.RawIOBase):
    """A read-only stream that first returns `prefix`, then reads from `raw`."""

    def __init__(self, prefix: bytes, raw):
        self._prefix = prefix
        self._raw = raw

    def readable(self):
        return True

    def readinto(self, b):
        if self._prefix:
            k = min(len(b), len(self._prefix))
            b[:k] = self._prefix[:k]
            self._prefix = self._prefix[k:]
            return k
        data = self._raw.read(len(b))
        if not data:
            return 0
        b[:len(data)] = data
        return len(data)


def _read_full(f, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        d = f.read(n - len(out))
        if not d:
            break
        out += d
    return bytes(out)


def _tsres_name(pow2: bool, k: int) -> str:
    if pow2:
        return f"2^-{k}"
    return {0: "s", 3: "ms", 6: "us", 9: "ns", 12: "ps", 15: "fs"}.get(k, f"1e-{k}")


def open_input(path: str, files: list) -> tuple[str, object, bytes, bool, str | None]:
    """Open a capture path ("-" for stdin) for any decoder: (display name, raw binary stream, its first bytes,
    whether it is a regular seekable file (rewound), compression: "gzip" | "bz2" | "xz" | None). Opened files
    are appended to `files` for the caller to close. Errors are one-line CaptureErrors."""
    name = "<stdin>" if path == "-" else path
    if path == "-":
        raw = getattr(sys.stdin, "buffer", sys.stdin)
        if raw is None:
            raise CaptureError("stdin is not available")
        head = _read_full(raw, 6)
        regular = False
    else:
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise CaptureError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise CaptureError(f"{path}: is a directory") from None
        except PermissionError:
            raise CaptureError(f"{path}: permission denied") from None
        except OSError as e:
            raise CaptureError(f"{path}: cannot open ({e.strerror or e})") from None
        files.append(f)
        try:
            head = _read_full(f, 6)
        except OSError as e:
            raise CaptureError(f"{path}: cannot read ({e.strerror or e})") from None
        try:
            regular = os.path.isfile(path) and f.seekable()
            if regular:
                f.seek(0)
        except OSError:
            regular = False
        raw = f
    if not head:
        raise CaptureError(f"{name}: empty file")

    comp = None
    if head[:2] == b"\x1f\x8b":
        comp = "gzip"
    elif head[:3] == b"BZh":
        comp = "bz2"
    elif head[:6] == b"\xfd7zXZ\x00":
        comp = "xz"
    elif head[:4] == b"\x28\xb5\x2f\xfd":
        raise CaptureError(f"{name}: zstd-compressed; decompress it first (zstd -d)")
    elif head[:4] == b"\x04\x22\x4d\x18":
        raise CaptureError(f"{name}: lz4-compressed; decompress it first (lz4 -d)")
    return name, raw, head, regular, comp


class Capture:
    """An opened capture. Use `open_capture(path)`; iterate `batches()` once."""

    def __init__(self, path: str):
        self.info = CaptureInfo(path=path)
        self.notes: Counter = Counter()      # non-skip observations, e.g. ip_fragment_first_used
        self._files: list = []
        self._mm = None
        self._released = 0
        self._stream = None
        self._consumed = False
        self._tunnels = {"": 0}              # tunnel description -> number (the `tunnel` column)
        self._tunnels_full = False
        self._frags = Reassembler()           # fragments of TCP datagrams, across groups
        self.icmp = IcmpErrors()              # ICMP errors quoting TCP (capture/icmp.py), beside the batches
        try:
            self._open(path)
        except CaptureError:
            self.close()
            raise
        except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as e:
            self.close()
            raise CaptureError(f"{path}: cannot read: {e}") from None

    # ---- opening ---------------------------------------------------------------------------
    def _open(self, path: str) -> None:
        name, raw, head, regular, comp = open_input(path, self._files)

        if comp is None and regular:
            size = os.fstat(raw.fileno()).st_size
            try:
                self._mm = mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ)
                self._buf, self._end, self._eof = self._mm, size, True
            except (OSError, ValueError):
                self._mm = None
        if self._mm is None:
            src = raw if regular else _Prefixed(head, raw)
            if comp is not None:
                self.info.compressed = True
                src = _Decompressor(src, comp)
            elif not regular:
                src = io.BufferedReader(src, 1 << 16)
            self._stream = src
            self._buf, self._end, self._eof = b"", 0, False
            self._fill(0)
            if self._end == 0:
                err = getattr(src, "error", None) or self._stream_error
                if err:
                    raise CaptureError(f"{name}: cannot read {comp or ''} data ({err})")
                raise CaptureError(f"{name}: empty file" + (" (after decompression)" if comp else ""))

        magic = bytes(self._buf[:4])
        if magic in _PCAP_MAGIC:
            self._open_pcap(name, magic)
        elif magic == _PCAPNG_SHB:
            self._open_pcapng(name)
        else:
            what = f" ({comp} content)" if comp else ""
            raise CaptureError(f"{name}: not a pcap or pcapng file{what} (magic {magic.hex() or 'none'})")

    def _fill(self, pos: int) -> int:
        """Drop buf[:pos] and append up to another chunk. Returns the new position of `pos`;
        sets self._eof when the stream is exhausted."""
        parts, got = [], 0
        while got < _CHUNK:
            try:
                d = self._stream.read(_CHUNK - got)
            except OSError as e:          # unreadable stdin / file
                self._stream_error = f"read error: {e}"
                d = b""
            if not d:
                self._eof = True
                break
            parts.append(d)
            got += len(d)
        if not parts:
            return pos
        rest = self._buf[pos:self._end]
        if rest:
            parts.insert(0, bytes(rest))
        self._buf = parts[0] if len(parts) == 1 else b"".join(parts)
        self._end = len(self._buf)
        return 0

    _stream_error: str | None = None

    def _need(self, pos: int, nbytes: int) -> int:
        """Make at least nbytes available from pos (streams). Returns the possibly moved pos."""
        while self._end - pos < nbytes and not self._eof:
            pos = self._fill(pos)
        return pos

    def _open_pcap(self, name: str, magic: bytes) -> None:
        order, mult, res = _PCAP_MAGIC[magic]
        self._pos = self._need(0, 24)
        if self._end < 24:
            raise CaptureError(f"{name}: truncated pcap header")
        vmaj, vmin, _zone, _sig, snap, network = struct.unpack_from(order + "HHiIII", self._buf, 4)
        self.info.format = "pcap"
        lt = network & 0xFFFF
        self.info.linktypes = [lt]
        self.info.ts_resolution = [res]
        self._order, self._mult, self._lt = order, mult, lt
        self._pos = 24
        if lt not in _SUPPORTED_LT:
            self.info.warnings.append(_links.unsupported_warning(lt))

    def _open_pcapng(self, name: str) -> None:
        self.info.format = "pcapng"
        self._pos = self._need(0, 12)
        bom = bytes(self._buf[8:12])
        if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
            raise CaptureError(f"{name}: pcapng with a bad byte-order magic")
        self._ifaces: list[tuple] = []     # (linktype, mul, div, offset_ns, snaplen)
        self._section_base = 0
        self._ng_order = "<"
        self._last_ts = 0
        self._spb_warned = False
        # read header blocks (SHB, IDBs) up to the first packet block
        pos, status, _ = self._walk_pcapng(0, 0)
        self._pos = pos
        if not self._ifaces and status == "corrupt":
            raise CaptureError(f"{name}: corrupt pcapng header")
        self._pending_status = status

    # ---- walking ---------------------------------------------------------------------------
    def _walk_pcap(self, pos: int, limit: int):
        """Collect up to `limit` complete records from pos. Returns (pos, status, offsets: int64 array, their
        headers: ts_sec, ts_frac, incl_len and orig_len, each an int64 array) with status "limit" (more may
        follow), "need" (needs more bytes) or "corrupt"."""
        sc = self._walk_scratch        # (reused: what is returned is read before the next call, never kept)
        if sc is None or len(sc[0]) != limit:
            sc = self._walk_scratch = (np.empty(limit, np.int64), np.empty((4, limit), np.int64))
        offs, hdr = sc
        n, pos, status = _kernel.walk_pcap(self._buf, pos, self._end, limit, self._order == ">", offs, hdr)
        return pos, ("limit", "need", "corrupt")[status], offs[:n], tuple(hdr[w, :n] for w in range(4))

    def _add_iface(self, buf, pos: int, blen: int, order: str) -> None:
        lt, _r, snap = struct.unpack_from(order + "HHI", buf, pos + 8)
        pow2, k, off = False, 6, 0
        o, oend = pos + 16, pos + blen - 4
        while o + 4 <= oend:
            code, olen = struct.unpack_from(order + "HH", buf, o)
            if code == 0:
                break
            v = o + 4
            if v + olen > oend:
                break
            if code == 9 and olen >= 1:
                b = buf[v]
                pow2, k = bool(b & 0x80), b & 0x7F
            elif code == 14 and olen >= 8:
                off = struct.unpack_from(order + "q", buf, v)[0]
            o = v + ((olen + 3) & ~3)
        if pow2:
            mul, div = 10 ** 9, 1 << k
        elif k <= 9:
            mul, div = 10 ** (9 - k), 1
        else:
            mul, div = 1, 10 ** (k - 9)
        self._ifaces.append((lt, mul, div, off * 10 ** 9, snap))
        self.info.linktypes.append(lt)
        self.info.ts_resolution.append(_tsres_name(pow2, k))
        if lt not in _SUPPORTED_LT:
            self.info.warnings.append(_links.unsupported_warning(lt, len(self._ifaces) - 1))

    def _walk_pcapng(self, pos: int, limit: int):
        """Walk blocks from pos and collect up to `limit` packet blocks.

        Returns (pos, status, (rpos, special)): rpos = block offsets of the packet blocks,
        special = {row: (ifid, ticks_hi, ticks_lo, cap, orig, data_offset)} for the rare
        non-EPB packet blocks (ticks_hi None for simple packet blocks). A group never spans
        a section header or an interface description block, so the section's byte order
        and interface table are constant within it."""
        buf, end = self._buf, self._end
        order = self._ng_order
        hdr = struct.Struct(order + "II").unpack_from
        rpos = np.empty(limit, np.int64)
        special: dict = {}
        n = 0
        status = "need"
        maxr = _MAX_RECORD
        while True:
            # the common case, a run of enhanced packet blocks, by the kernel; here, every other block
            n, pos = _kernel.walk_epbs(buf, pos, end, limit, order == ">", rpos, n)
            if pos + 12 > end:
                break
            btype, blen = hdr(buf, pos)
            if btype == 0x0A0D0D0A:
                if n:
                    status = "limit"
                    break
                bom = bytes(buf[pos + 8:pos + 12])
                if bom == b"\x4d\x3c\x2b\x1a":
                    order = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    order = ">"
                else:
                    status = "corrupt"
                    break
                hdr = struct.Struct(order + "II").unpack_from
                blen = hdr(buf, pos)[1]
            if blen < 12 or blen & 3 or blen > maxr:
                status = "corrupt"
                break
            if pos + blen > end:
                break
            if btype in (6, 3, 2):
                if n >= limit:
                    status = "limit"
                    break
                if btype == 6 or btype == 2:
                    if blen < 32:
                        status = "corrupt"
                        break
                    ifid, hi, lo, cap, orig = struct.unpack_from(order + "IIIII", buf, pos + 8)
                    if btype == 2:
                        ifid = ifid & 0xFFFF if order == "<" else ifid >> 16
                    special[n] = (ifid, hi, lo, min(cap, blen - 32), orig, pos + 28)
                else:
                    if blen < 16:
                        status = "corrupt"
                        break
                    orig = hdr(buf, pos + 4)[1]
                    cap = min(orig, blen - 16)
                    sb = self._section_base
                    if len(self._ifaces) > sb and self._ifaces[sb][4]:
                        cap = min(cap, self._ifaces[sb][4])
                    special[n] = (0, None, None, cap, orig, pos + 12)
                    if not self._spb_warned:
                        self._spb_warned = True
                        self.info.warnings.append("simple packet blocks have no timestamp; using the previous record's")
                rpos[n] = pos
                n += 1
            elif btype == 1:
                if n:
                    status = "limit"
                    break
                if blen < 20:
                    status = "corrupt"
                    break
                self._add_iface(buf, pos, blen, order)
            elif btype == 0x0A0D0D0A:
                self._section_base = len(self._ifaces)
            pos += blen
        self._ng_order = order
        return pos, status, (rpos[:n], special)

    def _ng_records(self, bufnp, rpos, special):
        """Vectorised EPB header extraction -> (doffs, caps, origs, ts, ifaces)."""
        order = self._ng_order
        P = np.array(rpos, np.int64)
        n = len(P)
        safe = np.minimum(P, len(bufnp) - 28) if len(bufnp) >= 28 else P * 0
        H = sliding_window_view(bufnp, 28)[safe].copy().view(order + "u4").astype(np.int64)
        ifid, hi, lo = H[:, 2], H[:, 3], H[:, 4]
        caps = np.minimum(H[:, 5], H[:, 1] - 32)
        origs = H[:, 6]
        doffs = P + 28
        has_ts = np.ones(n, bool)
        for r, (i, h, l, c, o, d) in special.items():
            ifid[r], caps[r], origs[r], doffs[r] = i, c, o, d
            if h is None:
                has_ts[r] = False
            else:
                hi[r], lo[r] = h, l
        sbase = self._section_base
        nif = len(self._ifaces) - sbase
        g = np.where(ifid < nif, ifid + sbase, -1)
        has_ts &= g >= 0
        ts = np.zeros(n, np.int64)
        ticks = (hi << 32) | lo          # may wrap for absurd values; handled below per iface
        for gi in np.unique(g[has_ts]).tolist():
            m = has_ts & (g == gi)
            _lt, mul, div, off, _s = self._ifaces[gi]
            if div == 1 and abs(off) < (1 << 62) and int(hi[m].max()) < (1 << 31) \
                    and int(ticks[m].max()) <= ((1 << 62) // mul):
                ts[m] = ticks[m] * mul + off
            else:
                rows = np.nonzero(m)[0]
                vals = [((int(a) << 32 | int(b)) * mul) // div + off for a, b in zip(hi[rows], lo[rows])]
                ts[rows] = [min(max(v, -(1 << 63)), (1 << 63) - 1) for v in vals]
        if not has_ts.all():             # SPBs / unknown interfaces: previous record's timestamp
            idx = np.where(has_ts, np.arange(n), -1)
            np.maximum.accumulate(idx, out=idx)
            ts = np.where(idx >= 0, ts[np.maximum(idx, 0)], self._last_ts)
        self._last_ts = int(ts[-1])
        return doffs, caps, origs, ts, g

    # ---- public ------------------------------------------------------------------------------
    def batches(self, size: int = 65536) -> Iterator[Batch]:
        """Yield batches (at most `size` rows each) of TCP segments in capture order."""
        if self._consumed:
            raise CaptureError(f"{self.info.path}: capture already read (open it again)")
        self._consumed = True
        size = max(1, int(size))
        try:
            yield from self._batches(size)
        finally:
            self.close()

    def _batches(self, size: int) -> Iterator[Batch]:
        info = self.info
        pcap = info.format == "pcap"
        pos = self._pos
        if not pcap:
            lt_table = np.array([i[0] for i in self._ifaces] + [_NO_IFACE], np.int64)
        while True:
            buf = self._buf
            if pcap:
                pos, status, offs, hdr = self._walk_pcap(pos, size)
                n = len(offs)
                if n:
                    bufnp = np.frombuffer(buf, np.uint8, count=self._end)
                    ro = offs
                    sec, frac, caps, origs = hdr
                    if int(caps.max()) > _MAX_RECORD:          # corrupt record header inside the file
                        bad = int(np.argmax(caps > _MAX_RECORD))
                        pos, status, n = int(offs[bad]), "corrupt", bad
                        ro, sec, frac, caps, origs = ro[:n], sec[:n], frac[:n], caps[:n], origs[:n]
                    ts = sec * 1_000_000_000
                    if self._mult == 1:
                        ts += frac
                    else:                               # (frac is this group's scratch: scaled in place)
                        ts += np.multiply(frac, self._mult, out=frac)
                    doffs = ro + 16
                    ifaces = None                       # all 0 (made at the batch's length)
                    lt_rows, lts = self._lt, (self._lt,)
                    if not n:
                        del bufnp
            else:
                pos, status, (rpos, special) = self._walk_pcapng(pos, size)
                n = len(rpos)
                if n:
                    bufnp = np.frombuffer(buf, np.uint8, count=self._end)
                    doffs, caps, origs, ts, ifaces = self._ng_records(bufnp, rpos, special)
                    if len(lt_table) != len(self._ifaces) + 1:
                        lt_table = np.array([i[0] for i in self._ifaces] + [_NO_IFACE], np.int64)
                    lt_rows = lt_table[ifaces]
                    lts = tuple(int(x) for x in np.unique(lt_rows))
            if n:
                index = np.arange(info.records + 1, info.records + 1 + n, dtype=np.int64)
                if info.first_ts is None:
                    info.first_ts = int(ts[0])
                info.last_ts = int(ts[-1])
                info.records += n
                rows, cols, st, slow_reasons, ff = _decode(bufnp, buf, doffs, caps, origs, lt_rows, lts,
                                                           self._tunnels, self._frags)
                if len(self._tunnels) > len(info.tunnels):
                    info.tunnels[:] = sorted(self._tunnels, key=self._tunnels.__getitem__)[:_MAX_TUNNELS + 1]
                    if len(self._tunnels) > _MAX_TUNNELS + 1 and not self._tunnels_full:
                        self._tunnels_full = True
                        info.warnings.append(f"more than {_MAX_TUNNELS} distinct tunnels; later ones share "
                                             "the last tunnel number")
                del bufnp
                icmp_rows(self.icmp, buf, doffs, caps, lt_rows, index, ts, st)
                skips = st[st > _SLOW]                  # (the few records that are neither rows nor slow)
                if len(skips):
                    codes = np.bincount(skips, minlength=len(SKIP_REASONS) + 2)
                    for reason, code in _CODE.items():
                        if codes[code]:
                            info.skipped[reason] += int(codes[code])
                info.skipped.update(slow_reasons)
                if ff:
                    self.notes["ip_fragment_first_used"] += ff
                count_jumbograms(self.notes, cols)
                if len(rows):
                    if len(rows) == n:                  # every record a row (rows is 0..n-1): no gathers
                        out = {"index": index, "ts": ts}
                    else:
                        out = {"index": index[rows], "ts": ts[rows]}
                    out["iface"] = np.zeros(len(rows), np.uint16) if ifaces is None else ifaces[rows]
                    out.update(cols)
                    b = Batch({k: np.ascontiguousarray(out[k]).astype(dt, copy=False)
                               for k, dt in ALL_COLUMNS.items()})
                    info.tcp_segments += len(b)
                    count_checksums(info, b.cols["csum"])
                    info.bytes_read = self._consumed_before + pos
                    yield b
            info.bytes_read = self._consumed_before + pos
            if self._mm is not None and pos - self._released >= _RELEASE:
                # A mapped file's pages count in RSS as they are read: hand back what is behind us, so memory
                # stays flat on a multi-gigabyte capture (the page cache keeps them; nothing is re-read).
                edge = pos - pos % mmap.PAGESIZE
                try:
                    self._mm.madvise(mmap.MADV_DONTNEED, self._released, edge - self._released)
                except (AttributeError, OSError, ValueError):
                    pass
                self._released = edge
            if status == "limit":
                continue
            if status == "corrupt":
                info.warnings.append(f"corrupt {'record header' if pcap else 'block'} at byte offset "
                                     f"{self._consumed_before + pos}; stopped reading")
                break
            # need more data
            if self._eof:
                if pos < self._end:
                    info.truncated = True
                    info.warnings.append(f"file ends in the middle of a {'record' if pcap else 'block'} "
                                         f"({self._end - pos} trailing bytes ignored)")
                break
            npos = self._fill(pos)
            if npos != pos:
                self._consumed_before += pos
            pos = npos
        err = getattr(self._stream, "error", None) or self._stream_error
        if err:
            info.truncated = True
            info.warnings.append(err)
        if self.notes["ip_fragment_first_used"]:
            info.warnings.append(f"{self.notes['ip_fragment_first_used']} first IP fragment(s) used without "
                                 "reassembly (their plen covers the first fragment only)")
        fragment_notes(self._frags, self.notes, info.warnings)

    _consumed_before = 0
    _walk_scratch = None

    def close(self) -> None:
        self._buf = b""
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:
                pass
            self._mm = None
        for f in reversed(self._files):
            try:
                f.close()
            except Exception:
                pass
        self._files = []

    def __enter__(self) -> "Capture":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Decompressor:
    """Incremental gzip/bz2/xz reader that survives truncated or corrupt input: `read`
    returns what could be decompressed; `error` says why the stream ended early."""

    def __init__(self, raw, kind: str):
        self._raw = raw
        self._kind = kind
        self._d = self._new()
        self._done = False
        self._started = False
        self.error: str | None = None

    def _new(self):
        if self._kind == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        if self._kind == "bz2":
            return bz2.BZ2Decompressor()
        return lzma.LZMADecompressor()

    def read(self, n: int = -1) -> bytes:
        while not self._done:
            try:
                chunk = self._raw.read(1 << 16)
            except OSError as e:
                self.error, self._done = f"read error: {e}", True
                break
            if not chunk:
                self._done = True
                if self._started and not self._d.eof:
                    self.error = f"{self._kind} stream ends early (file truncated)"
                break
            try:
                out = []
                while chunk:
                    if self._d.eof:           # next member of a multi-member file
                        if not chunk.strip(b"\0"):
                            break             # trailing zero padding
                        self._d = self._new()
                    self._started = True
                    out.append(self._d.decompress(chunk))
                    chunk = self._d.unused_data if self._d.eof else b""
            except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError) as e:
                self.error, self._done = f"corrupt {self._kind} data ({e})", True
                out.append(b"")
            data = b"".join(out)
            if data:
                return data
        return b""


def open_capture(path: str) -> Capture:
    """Open a pcap/pcapng file (optionally gzip/bz2/xz-compressed); `-` reads stdin.
    Raises CaptureError with a one-line message if it cannot be read as a capture."""
    return Capture(path)
