"""Reference decoder: pcap / pcapng -> TCP `Batch`es, one record at a time, with dpkt.

`open_capture_dpkt(path)` has the interface of `reader.open_capture` (`.info`, `.notes`,
`.batches(size)`, `.close()`) and must produce the same rows (concatenated over batches) and the
same `info`. It is slow and simple on purpose: `reader.py` is the hot path, this module is what it
is checked against (tests/test_decoders.py).

dpkt does the field decoding at every layer:

* classic pcap: `dpkt.pcap.Reader` parses and checks the file header (magic, byte order,
  nanosecond magic, `datalink()`); records are read with dpkt's own record-header class for that
  magic (`dpkt.pcap.MAGIC_TO_PKT_HDR`: `PktHdr` / `LEPktHdr`).
* pcapng: dpkt's `EnhancedPacketBlock[LE]`, `PacketBlock[LE]`, `InterfaceDescriptionBlock[LE]`
  and `PcapngOption[LE]`; the blocks are walked here because `dpkt.pcapng.Reader` only knows the
  first interface of the first section.
* link layers: `dpkt.ethernet.Ethernet` (802.1Q / QinQ tags), `dpkt.ethernet.VLANtag8021Q`,
  `dpkt.sll.SLL`, `dpkt.sll2.SLL2`; network: `dpkt.ip.IP`, `dpkt.ip6.IP6`,
  `dpkt.ip6.IP6FragmentHeader`; transport: `dpkt.tcp.TCP` and `dpkt.tcp.parse_opts`.
* input plumbing (stdin, gzip / bz2 / xz, incl. truncated and multi-member streams) reuses the
  reader module's `_Decompressor` / `_Prefixed` so both decoders see the same bytes.

Adaptations: where dpkt decides differently from reader.py's documented decisions, this module
follows reader.py:

1. Timestamps: dpkt's readers return float (pcap µs, pcapng) or Decimal seconds; here the integer
   fields of the record headers are combined exactly into int ns (pcapng: if_tsresol powers of 10
   and of 2, if_tsoffset, clamped to int64), like reader.py.
2. Original length: dpkt's pcap/pcapng iterators drop it; it is taken from the record header
   because IPv4 total length 0 / IPv6 payload length 0 fall back to it (reader.py decision).
3. pcap link type: `datalink()` is the full 32-bit field; only the low 16 bits are the link type.
   The modified-pcap magics that dpkt accepts (0xa1b2cd34) are rejected like reader.py does.
4. Truncated / corrupt files: `dpkt.pcap.Reader` silently yields a short last record (and raises
   on a short record header); here a short record/block ends the capture with
   `info.truncated` and the same "trailing bytes ignored" warning as reader.py. A record header
   with caplen (or a block with length) > 64 MiB, not a multiple of 4, or < 12 is "corrupt" and
   stops reading, with reader.py's warning.
5. pcapng: all sections and interfaces are used; `iface` is the global interface number (reader
   decision). EPB/PB captured length is clamped to the block (dpkt's `pkt_data` would run into the
   trailing length field); a block whose trailing length differs from its header, or with a
   non-UTF-8 comment option, makes dpkt's full unpack raise, so EPB/PB fall back to dpkt's
   `unpack_hdr`, and IDBs are always read with `unpack_hdr` plus one `PcapngOption` at a time
   (an option running past the block ends the option list, as in reader.py). Simple Packet
   Blocks (no dpkt class) are read with struct; SPBs and EPBs on an unknown interface get the
   previous record's timestamp.
6. Ethernet: dpkt also decodes Novell raw, Cisco ISL, MPLS and QinQ with ethertype 0x9200;
   reader.py counts those as `non_ip`, so frames whose ethertype is 0x9200 or MPLS are classified
   before dpkt is asked. 802.3 frames (ethertype <= 1500) are LLC/SNAP read with dpkt's LLC header
   here (dpkt's LLC calls any DSAP = SSAP = 0xAA SNAP and decodes eagerly; the control field must
   be 3 and the payload stays bytes), after VLAN tags too. dpkt stops after two VLAN tags
   and only stacks tags whose inner type is 0x8100; further 0x8100 / 0x88a8 / 0x9100 tags are
   peeled here with `VLANtag8021Q` (also after SLL / SLL2, as reader.py does).
   The link classes are subclassed with a type table that keeps the payload as bytes, so that
   dpkt does not decode every protocol it knows (and cannot raise from deep inside one).
7. Loopback (DLT_NULL / DLT_LOOP): `dpkt.loopback.Loopback` decodes eagerly (IP, or Ethernet for
   any other family) and raises on a bad inner header, and it accepts both byte orders for both
   link types. The family is therefore read from the raw 4 bytes: NULL accepts the value in
   either byte order (dpkt's rule, equal to reader.py's heuristic), LOOP only in network order.
8. IPv4: dpkt does not check the version nibble (reader: `malformed_ip`), silently cuts options
   that the capture cut (reader: `truncated_ip_header`), and decodes TCP from
   buf[ihl:total length] - so a total length below the header length is `malformed_ip`, a TCP
   header that does not fit the IP payload (or with data offset < 5) is `malformed_tcp`, and
   fewer than 20 captured TCP bytes is `truncated_tcp_header`. Only protocol 6 is decoded
   (dpkt's IP is subclassed with `_protosw = {6: TCP}`); a first fragment (MF, offset 0) is
   a fragment of a TCP datagram goes to an ipfrag.Reassembler (the store's rules are reader.py's;
   the headers are read by dpkt's IP / IP6FragmentHeader here, and the whole datagram decoded again
   by dpkt when complete).
9. IPv6: when the next header is TCP, dpkt's `IP6.unpack` is used. Extension headers are walked
   here (dpkt's fixed header only): dpkt treats ESP as an extension header that swallows the
   packet (reader: `other_ip_proto`), does not walk mobility / HIP / shim6 headers (135, 139,
   140), only checks fragment offsets when the *first* header is a fragment header (and raises
   AttributeError when a fragment header is followed by another extension header), needs 12
   bytes for an AH header, rejects malformed hop-by-hop TLVs, and cannot tell headers cut by the
   snaplen from headers overrunning the payload length. The fragment header itself is decoded
   with `IP6FragmentHeader`.
10. plen = IP-header length - IP header (incl. extension headers) - TCP data offset, never the
    captured length (dpkt's `len(tcp.data)` is the captured one).
11. TCP options: `dpkt.tcp.parse_opts` keeps going after EOL and turns option lengths 0 / 1 into
    2; reader.py stops at EOL, at a length < 2 and at an option running past the captured header.
    The raw length byte is checked next to each parsed option to apply those stops.

12. Link types of capture/links.py (FDDI, 802.11 bare / radiotap / PPI, NFLOG, PPP, PPP in HDLC
    framing, PPPoE without Ethernet, Cisco HDLC): dpkt's Radiotap (fixed header only: its full
    unpack decodes every present field) and LLC classes where dpkt has them, struct elsewhere (dpkt
    has no FDDI, PPI, NFLOG or Cisco HDLC classes); written independently of links.py, so that the
    two are checked against each other (tests/test_links.py, on damaged frames too).

13. Encapsulations, decapsulated here independently of reader.py (which is checked against this):
    dpkt's classes where dpkt has them - `MPLSlabel` (the label stack; dpkt's Ethernet guesses the
    payload of MPLS itself, so MPLS ethertypes reach it as bytes), `GRE` (fixed header; the optional
    fields are read here because dpkt also reads the PPTP acknowledgment field in version-0 GRE,
    where that bit is reserved), `PPPoE` and PPPoE's `PPP` (protocol field, compressed or not),
    `UDP`, `IP` / `IP6` and Ethernet's header; `dpkt.Packet` header classes written from the specs
    where dpkt has none: VXLAN (RFC 7348), VXLAN-GPE, Geneve (RFC 8926), GTP-U (TS 29.281, with its
    extension header chain), Teredo's authentication and origin indicators (RFC 4380 5.1.1), NSH
    (RFC 8300), ERSPAN II / III, PBB's I-TAG (802.1ah), FabricPath, VN-Tag, E-Tag (802.1BR) and the
    MACsec SecTAG (802.1AE). The decisions are reader.py's documented ones: VN-Tag, E-Tag, MACsec and
    LLC/SNAP are tags (not counted, no description); every other encapsulation is described in the
    row's tunnel text (outermost first, " / "-joined; `info.tunnels` numbers the texts in order of
    first appearance, the `tunnel` column), at most 4 deep (a fifth: "tunnel_too_deep"); encrypted
    or changed MACsec data is "encrypted"; an encapsulation that is cut short, malformed or an
    unsupported variant (GRE with routing or version != 0) is "tunnel_error"; a UDP tunnel port whose
    payload is not that tunnel stays "udp" (the lower port tried first); Teredo on any other port
    when the IPv6 header fills the UDP length exactly; an encapsulation inside an IP first fragment
    is "ip_fragment"; TCP fragments inside a tunnel are reassembled per tunnel and the row carries the
    fragments' tunnel; the row's addresses, TTL and checksum are the innermost IP header's, and the
    skip reason of an encapsulated record is the innermost one. Inner headers are read up to the end
    of the captured bytes (not the outer IP length), as reader.py does. ICMP errors (the side
    table) are read from an unencapsulated outer IP only, as capture/icmp.py defines them.
"""
from __future__ import annotations

import io
import ipaddress
import struct
from collections import Counter
from typing import Iterator, NamedTuple

import dpkt
import dpkt.ethernet as d_eth
import dpkt.icmp as d_icmp
import dpkt.icmp6 as d_icmp6
import dpkt.ip as d_ip
import dpkt.ip6 as d_ip6
import dpkt.llc as d_llc
import dpkt.radiotap as d_radiotap
import dpkt.pcap as d_pcap
import dpkt.pcapng as d_ng
import dpkt.gre as d_gre
import dpkt.pppoe as d_pppoe
import dpkt.sll as d_sll
import dpkt.tcp as d_tcp
import dpkt.udp as d_udp
import numpy as np

try:
    import dpkt.sll2 as d_sll2
except ImportError:  # pragma: no cover - dpkt < 1.9.8
    d_sll2 = None

from . import batch as _batch
from .batch import (COLUMNS, CSUM_BAD, CSUM_GOOD, CSUM_UNVERIFIABLE, Batch, CaptureError, CaptureInfo,
                    count_checksums)
from .icmp import IcmpErrors
from .ipfrag import Reassembler
from .links import unsupported_warning
from .reader import (JUMBO_IP_LEN, SKIP_REASONS, _Decompressor, _Prefixed, _tsres_name, fragment_notes,
                     open_input)

__all__ = ["open_capture_dpkt", "DpktCapture", "decode_record"]

_MAX_RECORD = 1 << 26
_MAPPED = b"\x00" * 10 + b"\xff\xff"
_VLAN = (0x8100, 0x88A8, 0x9100)
_ETH_NOT_IP = (0x9200,)                         # a type dpkt decodes itself (QinQ) but reader calls non_ip
_MPLS = (0x8847, 0x8848)                        # decoded here label by label (dpkt's Ethernet guesses the payload)
_SUPPORTED_LT = {0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 9, 10, 50, 51, 104, 105, 127, 192, 239}
_PPP_TYPES = {0x21: 0x0800, 0x57: 0x86DD, 0x281: 0x8847, 0x283: 0x8848}
_IP6_WALK = (0, 43, 60, 44, 51, 135, 139, 140)
_AF6 = (24, 28, 30)
_PCAP_MAGICS = {   # big-endian magic value -> (byte order, ns per fraction unit, resolution name)
    d_pcap.TCPDUMP_MAGIC: (">", 1000, "us"),
    d_pcap.PMUDPCT_MAGIC: ("<", 1000, "us"),
    d_pcap.TCPDUMP_MAGIC_NANO: (">", 1, "ns"),
    d_pcap.PMUDPCT_MAGIC_NANO: ("<", 1, "ns"),
}
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_MAX_TUNNEL_ID = np.iinfo(_batch.EXTRA_COLUMNS["tunnel"]).max
assert set(SKIP_REASONS) >= {"arp", "non_ip", "udp", "icmp", "icmpv6"}


# --------------------------------------------------------------------------------------------
# dpkt classes, restricted to what the tracker needs
# --------------------------------------------------------------------------------------------

class _Payload(dpkt.Packet):
    """Stand-in for 'whatever comes next': keeps the bytes after a link header undecoded."""
    __hdr__ = ()


class _AnyType(dict):
    def __missing__(self, key):
        return _Payload


class _Eth(d_eth.Ethernet):
    _typesw = _AnyType()


class _SLL(d_sll.SLL):
    _typesw = _AnyType()


if d_sll2 is not None:
    class _SLL2(d_sll2.SLL2):
        _typesw = _AnyType()
else:  # pragma: no cover
    _SLL2 = None


class _IP(d_ip.IP):
    _protosw = {d_ip.IP_PROTO_TCP: d_tcp.TCP}


class _IP6(d_ip6.IP6):
    _protosw = {d_ip.IP_PROTO_TCP: d_tcp.TCP}


class _IP6Hdr(d_ip6.IP6):
    """dpkt's fixed IPv6 header only (extension headers are walked by `_ipv6`)."""

    def unpack(self, buf):
        dpkt.Packet.unpack(self, buf)


class _IPHdr(d_ip.IP):
    """dpkt's IPv4 header only (a quoted header: its payload is usually cut short)."""

    def unpack(self, buf):
        dpkt.Packet.unpack(self, buf)


class _Bare(dict):
    """A type table that keeps every payload as bytes."""

    def __missing__(self, key):
        raise KeyError(key)


class _ICMP(d_icmp.ICMP):
    _typesw = _Bare()


class _ICMP6(d_icmp6.ICMP6):
    _typesw = _Bare()


def icmp_error(data: bytes, lt: int):
    """An ICMP/ICMPv6 error quoting TCP, decoded with dpkt's headers, as capture/icmp.py's row tuple (the
    same facts as its `parse_error`, which tests hold this to), or None."""
    r = _link(data, lt)
    if type(r) is str:
        return None
    et, p, _ = r
    while et <= 1500:
        r = _snap(data, r[2])
        if type(r) is str:
            return None
        et, p, _ = r
    try:
        if et == 0x0800:
            ip = _IPHdr(p)
            if ip.v != 4 or ip.hl < 5 or ip.p != 1 or ip.mf or ip.offset or len(ip.opts) < ip.hl * 4 - 20:
                return None
            icmp = _ICMP(p[ip.hl * 4:])
            if icmp.type not in (3, 11, 12) or len(icmp.data) < 4 + 20:
                return None
            mtu = struct.unpack("!H", icmp.data[2:4])[0] if icmp.type == 3 and icmp.code == 4 else 0
            quoted = icmp.data[4:]
            q = _IPHdr(quoted)
            qhl = q.hl * 4
            if q.v != 4 or q.hl < 5 or q.p != 6 or q.offset or len(quoted) < qhl + 8:
                return None
            fam, sender, ttl, qs, qd, t = 4, _MAPPED + ip.src, ip.ttl, _MAPPED + q.src, _MAPPED + q.dst, quoted[qhl:]
        elif et == 0x86DD:
            ip6 = _IP6Hdr(p)
            if ip6.v != 6 or ip6.nxt != 58:
                return None
            icmp = _ICMP6(p[40:])
            if icmp.type not in (1, 2, 3, 4) or len(icmp.data) < 4 + 40:
                return None
            mtu = struct.unpack("!I", icmp.data[:4])[0] if icmp.type == 2 else 0
            quoted = icmp.data[4:]
            q = _IP6Hdr(quoted)
            if q.v != 6 or q.nxt != 6 or len(quoted) < 48:
                return None
            fam, sender, ttl, qs, qd, t = 6, ip6.src, ip6.hlim, q.src, q.dst, quoted[40:]
        else:
            return None
    except (dpkt.NeedData, dpkt.UnpackError):
        return None
    sport, dport, seq = struct.unpack("!HHI", t[:8])
    return (fam, sender, ttl, icmp.type, icmp.code, mtu, qs, qd, sport, dport, seq)


# --------------------------------------------------------------------------------------------
# one record -> skip reason or row
# --------------------------------------------------------------------------------------------

def _peel_vlans(et: int, payload: bytes):
    while et in _VLAN:
        try:
            tag = d_eth.VLANtag8021Q(payload)
        except dpkt.NeedData:
            return "truncated_link_header"
        et = tag.type
        payload = payload[tag.__hdr_len__:]
    return et, payload


def _snap(data: bytes, off: int):
    """802.2 LLC (dpkt's LLC header: dsap, ssap, ctl) with a SNAP header (OUI, type) at `off` ->
    (ethertype, payload, offset) or a skip reason. dpkt's LLC calls any dsap = ssap = 0xAA SNAP and
    decodes the payload eagerly; here the control field must be 3 (UI) and the payload stays bytes."""
    if len(data) < off + d_llc.LLC.__hdr_len__:
        return "non_ip"
    c = d_llc.LLC.__new__(d_llc.LLC)
    dpkt.Packet.unpack(c, data[off:])
    if not (c.is_snap and c.ctl == 3):
        return "non_ip"
    if len(c.data) < 5:
        return "truncated_link_header"
    et = struct.unpack(">H", c.data[3:5])[0]
    return et, data[off + 8:], off + 8


def _ppp(data: bytes, off: int):
    """PPP: optional 0xff 0x03, then a 1-byte (odd, compressed) or 2-byte protocol."""
    p = data[off:]
    if p[:2] == b"\xff\x03":
        p, off = p[2:], off + 2
    if not p:
        return "truncated_link_header"
    if p[0] & 1:
        proto, hl = p[0], 1
    elif len(p) < 2:
        return "truncated_link_header"
    else:
        proto, hl = struct.unpack(">H", p[:2])[0], 2
    et = _PPP_TYPES.get(proto)
    return "non_ip" if et is None else (et, data[off + hl:], off + hl)


def _wlan(data: bytes, off: int):
    """802.11 data frame at `off` (frame control: version, type, subtype; flags: to/from DS, protected,
    order) -> its LLC/SNAP payload; management, control and null-data frames are non_ip."""
    if len(data) < off + 24:
        return "truncated_link_header"
    fc, flags = data[off], data[off + 1]
    ver, ftype, sub = fc & 3, (fc >> 2) & 3, fc >> 4
    if ver != 0 or ftype != 2 or sub in (4, 5, 6, 7, 12, 13, 14, 15):
        return "non_ip"
    qos = sub >= 8
    hl = 24 + (6 if flags & 0x03 == 0x03 else 0) + (2 if qos else 0) + (4 if qos and flags & 0x80 else 0)
    if len(data) < off + hl:
        return "truncated_link_header"
    if flags & 0x40:
        return "encrypted"
    return _snap(data, off + hl)


def _other_link(data: bytes, lt: int, off: int):
    n = len(data)
    if lt == 10:                                    # FDDI: fc, da, sa
        return "truncated_link_header" if n < off + 13 else _snap(data, off + 13)
    if lt == 105:
        return _wlan(data, off)
    if lt == 127:
        if n < off + d_radiotap.Radiotap.__hdr_len__:
            return "truncated_link_header"
        rt = d_radiotap.Radiotap.__new__(d_radiotap.Radiotap)     # the fixed header only: version, pad,
        dpkt.Packet.unpack(rt, data[off:])                         # length (LE); dpkt's full unpack
                                                                   # decodes every present field
        if rt.version != 0:
            return "non_ip"
        rl = rt.length
        if rl < 8 or n < off + rl:
            return "truncated_link_header"
        return _wlan(data, off + rl)
    if lt == 192:                                   # PPI: version, flags, length (LE), dlt (LE)
        if n < off + 8:
            return "truncated_link_header"
        ver, _fl, pl, dlt = struct.unpack_from("<BBHI", data, off)
        if ver != 0:
            return "non_ip"
        if pl < 8 or n < off + pl:
            return "truncated_link_header"
        if dlt == 1:
            if n < off + pl + 14:
                return "truncated_link_header"
            r = _peel_vlans(struct.unpack_from(">H", data, off + pl + 12)[0], data[off + pl + 14:])
            return r if type(r) is str else (r[0], r[1], n - len(r[1]))
        return "non_ip" if dlt == 192 else _other_link(data, dlt, off + pl)
    if lt == 239:                                   # NFLOG: family, version, res id; TLVs (host order)
        if n < off + 4:
            return "truncated_link_header"
        et = {2: 0x0800, 10: 0x86DD}.get(data[off])
        if et is None:
            return "non_ip"
        o = off + 4
        while o + 4 <= n:
            tl, tt = struct.unpack_from("<HH", data, o)
            if tl < 4 or o + tl > n:
                tl, tt = struct.unpack_from(">HH", data, o)
                if tl < 4 or o + tl > n:
                    break
            if tt & 0x7FFF == 9:                    # NFULA_PAYLOAD
                return et, data[o + 4:], o + 4
            o += (tl + 3) // 4 * 4
        return "truncated_link_header"
    if lt == 9 or lt == 50 and not (n > off and data[off] in (0x0F, 0x8F)):
        return _ppp(data, off)
    if lt == 51:                                    # PPPoE session header without Ethernet
        if n < off + 6:
            return "truncated_link_header"
        if data[off] != 0x11 or data[off + 1] != 0:
            return "non_ip"
        return _ppp(data, off + 6)
    if lt == 104 or lt == 50:                       # Cisco HDLC: address, control, ethertype (0x8035: SLARP)
        if n < off + 4:
            return "truncated_link_header"
        et = struct.unpack_from(">H", data, off + 2)[0]
        return "non_ip" if et == 0x8035 else (et, data[off + 4:], off + 4)
    return "unsupported_linktype"


def _link(data: bytes, lt: int):
    """-> (ethertype, l3 bytes, l3 offset) or a skip reason."""
    n = len(data)
    if lt == 1:
        if n < 14:
            return "truncated_link_header"
        et0 = (data[12] << 8) | data[13]
        if et0 <= 1500:                             # 802.3 length: LLC/SNAP
            return _snap(data, 14)
        if et0 in _ETH_NOT_IP:
            return "non_ip"
        if et0 in _MPLS:
            return et0, data[14:], 14
        try:
            e = _Eth(data)
        except dpkt.NeedData:       # a VLAN tag cut short
            return "truncated_link_header"
        tags = getattr(e, "vlan_tags", None)
        et = tags[-1].type if tags else e.type
        payload = e.data.data if isinstance(e.data, _Payload) else bytes(e.data)
    elif lt == 113 or lt == 276:
        cls = _SLL if lt == 113 else _SLL2
        if cls is None:
            return "unsupported_linktype"
        try:
            s = cls(data)
        except dpkt.NeedData:
            return "truncated_link_header"
        et = s.ethtype
        payload = s.data.data if isinstance(s.data, _Payload) else bytes(s.data)
    elif lt in (101, 12, 14):
        if n < 1:
            return "truncated_link_header"
        v = data[0] >> 4
        if v == 4:
            return 0x0800, data, 0
        if v == 6:
            return 0x86DD, data, 0
        return "malformed_ip"
    elif lt == 228 or lt == 229:
        if n < 1:
            return "truncated_link_header"
        return (0x0800 if lt == 228 else 0x86DD), data, 0
    elif lt == 0 or lt == 108:
        if n < 4:
            return "truncated_link_header"
        be = int.from_bytes(data[:4], "big")
        le = int.from_bytes(data[:4], "little")
        fams = (be,) if lt == 108 else (be, le)     # dpkt accepts X and X byte-swapped
        if 2 in fams:
            return 0x0800, data[4:], 4
        if any(f in _AF6 for f in fams):
            return 0x86DD, data[4:], 4
        return "non_ip"
    elif lt in _SUPPORTED_LT:
        return _other_link(data, lt, 0)
    else:
        return "unsupported_linktype"
    r = _peel_vlans(et, payload)
    if type(r) is str:
        return r
    et, payload = r
    return et, payload, n - len(payload)


# --------------------------------------------------------------------------------------------
# encapsulations (adaptation 13): dpkt's classes where dpkt has them (MPLSlabel, GRE, PPPoE, PPP,
# UDP, IP, IP6, Ethernet's header), dpkt.Packet header classes written from the specs elsewhere
# --------------------------------------------------------------------------------------------

MAX_TUNNEL_DEPTH = 4            # reader.py's documented limit; one more nested encapsulation: "tunnel_too_deep"
_UDP_TUNNEL_PORTS = {4789: "vxlan", 4790: "vxlan-gpe", 6081: "geneve", 2152: "gtpu", 3544: "teredo"}
# next protocol numbers of NSH (RFC 8300 section 2.2) and VXLAN-GPE: IPv4, IPv6, Ethernet, NSH, MPLS
_NEXT_PROTOCOL = {1: 0x0800, 2: 0x86DD, 3: 0x6558, 4: 0x894F, 5: 0x8847}
_TEB = 0x6558                   # transparent Ethernet bridging: an Ethernet frame follows


class _Hop(NamedTuple):
    """An encapsulation found inside an IP packet: its description, where the inner packet starts
    (relative to the IP header), its ethertype, and whether it starts with an Ethernet header."""
    desc: str
    off: int
    et: int
    eth: bool


class _EthHdr(dpkt.Packet):
    """Ethernet's fixed header only (dst, src, type), as dpkt's Ethernet declares it."""
    __hdr__ = d_eth.Ethernet.__hdr__


class _VNTag(dpkt.Packet):
    """Cisco VN-Tag after ethertype 0x8926: direction, pointer, destination vif, looped, reserved,
    version, source vif (4 bytes), then the ethertype of what follows."""
    __hdr__ = (("_d_p_dvif", "H", 0), ("_l_r_ver_svif", "H", 0), ("type", "H", 0))


class _ETag(dpkt.Packet):
    """IEEE 802.1BR E-Tag after ethertype 0x893F: E-PCP, E-DEI, ingress E-CID base; reserved, GRP,
    E-CID base; ingress E-CID ext; E-CID ext (6 bytes), then the ethertype."""
    __hdr__ = (("_pcp_dei_iecid", "H", 0), ("_grp_ecid", "H", 0), ("iecid_ext", "B", 0), ("ecid_ext", "B", 0),
               ("type", "H", 0))


class _SecTAG(dpkt.Packet):
    """IEEE 802.1AE MACsec SecTAG after ethertype 0x88E5: TCI (V, ES, SC, SCB, E, C) and AN, short
    length, packet number; an 8-byte SCI follows when TCI.SC is set."""
    __hdr__ = (("tci_an", "B", 0), ("sl", "B", 0), ("pn", "I", 0))
    SC, E, C = 0x20, 0x08, 0x04


class _ITag(dpkt.Packet):
    """IEEE 802.1ah (PBB) I-TAG after ethertype 0x88E7: I-PCP, I-DEI, UCA, reserved, I-SID (24 bits)."""
    __hdr__ = (("_pcp_dei_uca", "B", 0), ("_isid", "3s", b"\0\0\0"))

    @property
    def isid(self):
        return int.from_bytes(self._isid, "big")


class _FPTag(dpkt.Packet):
    """Cisco FabricPath tag after ethertype 0x8903: forwarding tag (10 bits), TTL (6)."""
    __hdr__ = (("_ftag_ttl", "H", 0),)
    __bit_fields__ = {"_ftag_ttl": (("ftag", 10), ("ttl", 6))}


class _NSH(dpkt.Packet):
    """RFC 8300 Network Service Header: base header (version, O, U, TTL, length in 4-byte words,
    MD type, next protocol) and service path header (SPI, SI); context headers fill the length."""
    __hdr__ = (("_ver_o_u_ttl_len", "H", 0), ("md_type", "B", 0), ("next", "B", 0), ("_spi_si", "I", 0))
    __bit_fields__ = {"_ver_o_u_ttl_len": (("ver", 2), ("o", 1), ("u", 1), ("ttl", 6), ("len", 6)),
                      "_spi_si": (("spi", 24), ("si", 8))}


class _VXLAN(dpkt.Packet):
    """RFC 7348 VXLAN header: flags (I), reserved, VNI (24 bits), reserved."""
    __hdr__ = (("flags", "B", 0x08), ("_r0", "3s", b"\0\0\0"), ("_vni_r", "I", 0))
    __bit_fields__ = {"_vni_r": (("vni", 24), ("_r1", 8))}


class _VXLANGPE(dpkt.Packet):
    """VXLAN-GPE header (draft-ietf-nvo3-vxlan-gpe): flags (R, R, Ver (2), I, P, B, O), reserved,
    next protocol, VNI (24 bits), reserved."""
    __hdr__ = (("flags", "B", 0x0C), ("_r0", "H", 0), ("next", "B", 0), ("_vni_r", "I", 0))
    __bit_fields__ = {"_vni_r": (("vni", 24), ("_r1", 8))}
    VER = 0x30


class _Geneve(dpkt.Packet):
    """RFC 8926 Geneve header: version (2 bits), option length (6, in 4-byte words), O, C, reserved,
    protocol type, VNI (24 bits), reserved; the options follow."""
    __hdr__ = (("_ver_optlen", "B", 0), ("_o_c", "B", 0), ("proto", "H", _TEB), ("_vni_r", "I", 0))
    __bit_fields__ = {"_ver_optlen": (("ver", 2), ("optlen", 6)), "_vni_r": (("vni", 24), ("_r1", 8))}


class _GTPv1(dpkt.Packet):
    """3GPP TS 29.281 GTP-U header: flags (version (3), PT, reserved, E, S, PN), message type,
    length, TEID; E, S or PN add 4 bytes (sequence number, N-PDU number, next extension header type)."""
    __hdr__ = (("flags", "B", 0x30), ("type", "B", 0xFF), ("len", "H", 0), ("teid", "I", 0))
    G_PDU = 0xFF


class _TeredoIndicator(dpkt.Packet):
    """RFC 4380 5.1.1: the first 4 bytes of a Teredo authentication indicator (0x0001, client id
    length, authentication value length) or origin indication (0x0000, obfuscated port)."""
    __hdr__ = (("kind", "H", 0), ("a", "B", 0), ("b", "B", 0))


class _PPPoEHdr(d_pppoe.PPPoE):
    """dpkt's PPPoE header only (version, type, code, session, length)."""

    def unpack(self, buf):
        dpkt.Packet.unpack(self, buf)


class _PPPProto(d_pppoe.PPP):
    """dpkt's PPP protocol field as PPPoE carries it (1 byte when compressed, else 2); payload as bytes."""
    _protosw: dict = {}


class _GREHdr(d_gre.GRE):
    """dpkt's GRE fixed header only (flags, protocol type); the optional fields are read here because
    dpkt also reads the PPTP acknowledgment field (flag 0x0080) in version-0 GRE, a reserved bit there."""

    def unpack(self, buf):
        dpkt.Packet.unpack(self, buf)


def _ip_text(b: bytes) -> str:
    return str(ipaddress.ip_address(b))


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _mac_pair(data: bytes, eth) -> str:
    """' src->dst' of the Ethernet header at `eth` (dpkt's mac_to_str), '' when there is none."""
    if eth is None:
        return ""
    e = _EthHdr(data[eth:])
    return f" {dpkt.utils.mac_to_str(e.src)}->{dpkt.utils.mac_to_str(e.dst)}"


def _fabricpath_switch(addr: bytes) -> str:
    """A FabricPath outer address: switch id (12 bits after U/L, I/G, end node id, OOO/DL, reserved),
    sub-switch id (8), LID (16); written switch.subswitch.lid in hex, as Wireshark does."""
    return f"{int.from_bytes(addr[1:3], 'big') & 0xFFF:03x}.{addr[3]:02x}.{int.from_bytes(addr[4:6], 'big'):04x}"


def _eth_at(data: bytes, off: int):
    """An Ethernet header (+ VLAN tags) at `off` -> (l3 offset, ethertype) or a skip reason."""
    try:
        e = _EthHdr(data[off:])
    except dpkt.NeedData:
        return "truncated_link_header"
    r = _peel_vlans(e.type, e.data)
    if type(r) is str:
        return r
    return len(data) - len(r[1]), r[0]


def _by_version(p: bytes, off: int):
    """A packet known only to be IP (MPLS, GTP-U): its ethertype from the version nibble."""
    if len(p) <= off:
        return "truncated_ip_header"
    return {4: 0x0800, 6: 0x86DD}.get(p[off] >> 4, "non_ip")


def _teredo(p: bytes, t: int, ulen: int, ep: str, any_port: bool):
    """The UDP payload at t + 8 as Teredo (RFC 4380 5.1.1: an authentication indicator, then an origin
    indication, each optional, then IPv6) -> _Hop or None. On a port other than 3544 the IPv6 header
    must be complete and its payload length fill the UDP length exactly (reader.py's documented rule)."""
    i = t + 8
    try:
        ind = _TeredoIndicator(p[i:])
        if ind.kind == 1:                           # id length, auth length, id, auth, 8-byte nonce, confirmation
            i += 4 + ind.a + ind.b + 8 + 1
    except dpkt.NeedData:
        pass
    if len(p) >= i + 8 and p[i:i + 2] == b"\0\0":   # origin indication: 0x0000, port, address
        i += 8
    if len(p) <= i or p[i] >> 4 != 6:
        return None
    if any_port:
        try:
            ip6 = _IP6Hdr(p[i:])
        except dpkt.NeedData:
            return None
        if ulen != i - t + 40 + ip6.plen:
            return None
    return _Hop(f"teredo {ep}", i, 0x86DD, False)


def _udp_tunnel(kind: str, p: bytes, t: int, u, ep: str):
    """The UDP payload at t + 8 as the tunnel registered on its port -> _Hop, a skip reason, or None
    when the payload is not that tunnel (the datagram stays "udp")."""
    o = t + 8
    try:
        if kind == "vxlan":
            h = _VXLAN(p[o:])
            return _Hop(f"vxlan {ep} vni {h.vni}", o + 8, _TEB, True)
        if kind == "vxlan-gpe":
            h = _VXLANGPE(p[o:])
            if h.flags & _VXLANGPE.VER:
                return None
            et = _NEXT_PROTOCOL.get(h.next)
            if et is None:
                return "non_ip"
            return _Hop(f"vxlan-gpe {ep} vni {h.vni}", o + 8, et, et == _TEB)
        if kind == "geneve":
            h = _Geneve(p[o:])
            if h.ver:
                return None
            i = o + 8 + h.optlen * 4
            if len(p) < i:
                return "tunnel_error"
            return _Hop(f"geneve {ep} vni {h.vni}", i, h.proto, h.proto == _TEB)
        if kind == "gtpu":
            h = _GTPv1(p[o:])
        else:
            return _teredo(p, t, u.ulen, ep, False)
    except dpkt.NeedData:
        return None
    if h.flags >> 5 != 1 or not h.flags & 0x10 or h.type != _GTPv1.G_PDU:      # GTPv1, G-PDU only
        return None
    i = o + 8
    if h.flags & 0x07:                              # E, S or PN: sequence number, N-PDU number, next type
        if len(p) < i + 4:
            return "tunnel_error"
        nxt = p[i + 3] if h.flags & 0x04 else 0
        i += 4
        while nxt:                                  # extension headers: length (4-byte words) ... next type
            ln = p[i] * 4 if len(p) > i else 0
            if ln == 0 or len(p) < i + ln:
                return "tunnel_error"
            nxt = p[i + ln - 1]
            i += ln
    et = _by_version(p, i)
    if type(et) is str:
        return et
    return _Hop(f"gtpu {ep} teid {h.teid}", i, et, False)


def _gre(p: bytes, t: int, ep: str):
    """RFC 2784/2890 GRE at `t` (version 0, no routing) and what it carries (ERSPAN I/II/III by protocol
    type and the S bit) -> _Hop or a skip reason."""
    try:
        g = _GREHdr(p[t:])
    except dpkt.NeedData:
        return "tunnel_error"
    if g.flags & d_gre.GRE_RP or g.v:               # routing present, or not version 0 (PPTP's enhanced GRE)
        return "tunnel_error"
    o = t + 4
    if g.flags & d_gre.GRE_CP:                      # checksum and reserved1
        o += 4
    key = None
    if g.flags & d_gre.GRE_KP:
        if len(p) < o + 4:
            return "tunnel_error"
        key = struct.unpack_from("!I", p, o)[0]
        o += 4
    if g.flags & d_gre.GRE_SP:
        o += 4
    if len(p) < o:
        return "tunnel_error"
    if g.p == 0x88BE and g.flags & d_gre.GRE_SP:    # ERSPAN type II: ver 1, vlan, cos, en, t, session id, index
        if len(p) < o + 8 or p[o] >> 4 != 1:
            return "tunnel_error"
        return _Hop(f"erspan2 {ep} session {struct.unpack_from('!H', p, o + 2)[0] & 0x3FF}", o + 8, _TEB, True)
    if g.p == 0x88BE:                               # ERSPAN type I: no header
        return _Hop(f"erspan1 {ep}", o, _TEB, True)
    if g.p == 0x22EB:                               # ERSPAN type III: ver 2 ... P, FT (5), hw id, D, Gra, O
        if len(p) < o + 12 or p[o] >> 4 != 2:
            return "tunnel_error"
        session = struct.unpack_from("!H", p, o + 2)[0] & 0x3FF
        w = struct.unpack_from("!H", p, o + 10)[0]
        if (w >> 10) & 0x1F:                        # frame type other than Ethernet
            return "non_ip"
        return _Hop(f"erspan3 {ep} session {session}", o + (20 if w & 1 else 12), _TEB, True)   # O: 8 more
    return _Hop(f"gre {ep}" + ("" if key is None else f" key {key}"), o, g.p, g.p == _TEB)


def _ip_payload(p: bytes, t: int, proto: int, fam: int, src: bytes, dst: bytes, first_frag: bool):
    """A non-TCP IP payload at `t`: an encapsulation (GRE and ERSPAN, IP-in-IP, the UDP tunnels, Teredo
    on any port) -> _Hop, or the skip reason. Only first fragments get here: an encapsulation in one is
    an "ip_fragment" (not reassembled)."""
    if proto == 17 and len(p) >= t + 8:
        u = d_udp.UDP(p[t:])
        s, d = _ip_text(src), _ip_text(dst)
        ep = f"{_endpoint(s, u.sport)}->{_endpoint(d, u.dport)}"
        hop = None
        for port in sorted({u.sport, u.dport}):     # the lower port first, as Wireshark does
            if port in _UDP_TUNNEL_PORTS:
                hop = _udp_tunnel(_UDP_TUNNEL_PORTS[port], p, t, u, ep)
                if hop is not None:
                    break
        if hop is None:
            hop = _teredo(p, t, u.ulen, ep, True)
        if hop is None:
            return "udp"
        return "ip_fragment" if first_frag else hop
    if proto in (4, 41, 47):
        if first_frag:
            return "ip_fragment"
        ep = f"{_ip_text(src)}->{_ip_text(dst)}"
        if proto == 47:
            return _gre(p, t, ep)
        kind = {(4, 4): "ipip", (4, 41): "6in4", (6, 4): "4in6", (6, 41): "6in6"}[fam, proto]
        return _Hop(f"{kind} {ep}", t, 0x0800 if proto == 4 else 0x86DD, False)
    if proto == 17:
        return "udp"
    if proto == 1 and fam == 4:
        return "icmp"
    if proto == 58 and fam == 6:
        return "icmpv6"
    return "other_ip_proto"


def _net(data: bytes, l3: int, et: int, orig: int, eth, frags):
    """From the network layer (`et` at `l3`; `eth` = offset of the Ethernet header in front, or None)
    to the TCP row, through every encapsulation, at most MAX_TUNNEL_DEPTH deep. Tags (802.3 LLC/SNAP,
    VN-Tag, E-Tag, MACsec) are stepped over like VLAN tags and are not counted; the others are recorded
    in the row's tunnel description, outermost first."""
    n = len(data)
    tun: list[str] = []
    while True:
        if len(tun) > MAX_TUNNEL_DEPTH:
            return "tunnel_too_deep"
        hop = None
        if et == 0x0800 or et == 0x86DD:
            r = (_ipv4 if et == 0x0800 else _ipv6)(data[l3:], l3, orig, frags, tun)
            if type(r) is not _Hop:
                return r
            hop = r._replace(off=l3 + r.off)
        elif et == 0x0806 or et == 0x8035:
            return "arp"
        elif et <= 1500:                            # an 802.3 length: LLC/SNAP carries the type
            r = _snap(data, l3)
            if type(r) is str:
                return r
            et, _, l3 = r
            continue
        elif et in _MPLS:                           # RFC 3032 label stack, at most 16 labels
            labels, o = [], l3
            while True:
                if len(labels) >= 16:
                    return "tunnel_error"
                try:
                    lab = d_eth.MPLSlabel(data[o:o + 4])
                except dpkt.NeedData:
                    return "tunnel_error"
                labels.append(str(lab.val))
                o += 4
                if lab.s:
                    break
            desc = f"mpls{_mac_pair(data, eth)} labels {','.join(labels)}"
            if n > o and data[o] >> 4 == 0:         # RFC 4385 pseudowire control word, then Ethernet
                hop = _Hop(desc, o + 4, _TEB, True)
            else:
                e = _by_version(data, o)
                if type(e) is str:
                    return e
                hop = _Hop(desc, o, e, False)
        elif et == 0x8926 or et == 0x893F:          # VN-Tag, E-Tag: tags
            try:
                tag = (_VNTag if et == 0x8926 else _ETag)(data[l3:])
            except dpkt.NeedData:
                return "truncated_link_header"
            et, l3 = tag.type, l3 + tag.__hdr_len__
            continue
        elif et == 0x88E5:                          # MACsec: a tag when the data is neither encrypted nor changed
            try:
                st = _SecTAG(data[l3:])
            except dpkt.NeedData:
                return "truncated_link_header"
            if st.tci_an & (_SecTAG.E | _SecTAG.C):
                return "encrypted"
            o = l3 + 6 + (8 if st.tci_an & _SecTAG.SC else 0)
            if n < o + 2:
                return "truncated_link_header"
            et, l3 = struct.unpack_from("!H", data, o)[0], o + 2
            continue
        elif et == 0x88E7:                          # PBB (MAC-in-MAC): I-TAG, then the customer's frame
            try:
                it = _ITag(data[l3:])
            except dpkt.NeedData:
                return "tunnel_error"
            hop = _Hop(f"pbb{_mac_pair(data, eth)} isid {it.isid}", l3 + 4, _TEB, True)
        elif et == 0x8903:                          # FabricPath: FP tag, then the classical Ethernet frame
            try:
                fp = _FPTag(data[l3:])
            except dpkt.NeedData:
                return "tunnel_error"
            ends = ""
            if eth is not None:
                outer = _EthHdr(data[eth:])
                ends = f" {_fabricpath_switch(outer.src)}->{_fabricpath_switch(outer.dst)}"
            hop = _Hop(f"fabricpath{ends} ftag {fp.ftag}", l3 + 2, _TEB, True)
        elif et == 0x894F:                          # NSH
            try:
                h = _NSH(data[l3:])
            except dpkt.NeedData:
                return "tunnel_error"
            hl = h.len * 4
            if h.ver or hl < 8 or n < l3 + hl:
                return "tunnel_error"
            nxt = _NEXT_PROTOCOL.get(h.next)
            if nxt is None:
                return "non_ip"
            hop = _Hop(f"nsh{_mac_pair(data, eth)} spi {h.spi} si {h.si}", l3 + hl, nxt, nxt == _TEB)
        elif et == _TEB:
            r = _eth_at(data, l3)
            if type(r) is str:
                return r
            eth = l3
            l3, et = r
            continue
        elif et == 0x8864:                          # RFC 2516 PPPoE session stage, then PPP
            try:
                pe = _PPPoEHdr(data[l3:])
            except dpkt.NeedData:
                return "tunnel_error"
            if n < l3 + 8 or pe.v != 1 or pe.type != 1 or pe.code != d_pppoe.PPPoE_SESSION:
                return "tunnel_error"
            pp = _PPPProto(pe.data)
            e = {0x21: 0x0800, 0x57: 0x86DD}.get(pp.p)
            if e is None:
                return "non_ip"
            hop = _Hop(f"pppoe{_mac_pair(data, eth)} session 0x{pe.session:04x}", n - len(pp.data), e, False)
        else:
            return "non_ip"
        tun.append(hop.desc)
        if hop.eth:
            r = _eth_at(data, hop.off)
            if type(r) is str:
                return r
            eth = hop.off
            l3, et = r
        else:
            l3, et, eth = hop.off, hop.et, None


def _tcp_row(tcp, captured_after_t: int, tcplen: int):
    """Common TCP checks. Returns a skip reason or (sport..tsecr) tuple without addresses."""
    if captured_after_t < 20:
        return "truncated_tcp_header"
    if not isinstance(tcp, d_tcp.TCP):
        return "malformed_tcp"         # dpkt: fewer than 20 bytes inside the IP length, or off < 5
    doff = tcp.off * 4
    if tcplen < doff:
        return "malformed_tcp"
    mss, ws, sok, hts, tsv, tse = 0, -1, False, False, 0, 0
    ob = tcp.opts
    if ob:
        i = 0
        for o in d_tcp.parse_opts(ob):
            if o is None:
                break
            k, d = o
            if k == 0:
                break
            if k == 1:
                i += 1
                continue
            ln = ob[i + 1]
            if ln < 2 or len(d) != ln - 2:
                break
            if k == 2 and ln == 4:
                mss = int.from_bytes(d, "big")
            elif k == 3 and ln == 3:
                ws = min(d[0], 127)
            elif k == 4 and ln == 2:
                sok = True
            elif k == 8 and ln == 10:
                hts = True
                tsv, tse = struct.unpack("!II", d)
            i += ln
    return (tcp.sport, tcp.dport, tcp.flags, tcp.seq, tcp.ack, tcp.win, tcplen - doff,
            mss, ws, sok, hts, tsv, tse)


def _ipv4(p: bytes, l3: int, orig: int, frags: Reassembler | None = None, tun: list | None = None):
    """IPv4 at data offset `l3` (`p` = the record from there on) -> row, skip reason or the _Hop of an
    encapsulation it carries. `tun` = the encapsulations around it (their text goes into the row)."""
    tun = tun or []
    try:
        ip = _IP(p)
    except dpkt.NeedData:
        return "truncated_ip_header"
    except dpkt.UnpackError:            # header length < 20
        return "malformed_ip"
    if ip.v != 4:
        return "malformed_ip"
    ihl = ip.hl * 4
    if len(ip.opts) < ihl - 20:
        return "truncated_ip_header"
    tot = ip.len or orig - l3           # 0: TSO, length left to the NIC
    if tot < ihl:
        return "malformed_ip"
    if (ip.mf or ip.offset) and ip.p == 6:         # a fragment of a TCP datagram: to the store
        if len(p) < tot or frags is None:
            return "ip_fragment"
        # (fragments inside different encapsulations are different datagrams)
        whole = frags.add((ip.src + ip.dst, ip.id, tuple(tun)), ip.offset * 8, bool(ip.mf), p[ihl:tot], p[:ihl])
        if whole is None:
            return "ip_fragment"
        h, pay = whole
        tot = len(h) + len(pay)
        if tot > 0xFFFF:
            return "malformed_ip"
        return _ipv4(h[:2] + struct.pack(">H", tot) + h[4:6] + b"\0\0" + h[8:] + pay, 0, tot, None, tun)
    if ip.offset:
        return "ip_fragment"
    if ip.p != 6:
        return _ip_payload(p, ihl, ip.p, 4, ip.src, ip.dst, bool(ip.mf))
    r = _tcp_row(ip.data, len(p) - ihl, tot - ihl)
    if type(r) is str:
        return r
    # IPv4's pseudo-header has a 16-bit length; written as IPv6's 32-bit one the sum is the same, and a
    # TSO super-packet's length (> 65535, from the record's original length) is not truncated (reader.py)
    cs = _csum(ip.src + ip.dst + struct.pack("!IxxxB", tot - ihl, 6), p, ihl, tot - ihl, ip.mf)
    return (4, _MAPPED + ip.src, _MAPPED + ip.dst) + r + (tot, bool(ip.mf), " / ".join(tun), cs, ip.ttl, ip.id)


def _csum(pseudo: bytes, p: bytes, t: int, tcplen: int, first_frag) -> int:
    """The `csum` column: the segment p[t:t + tcplen] with its pseudo-header summed with dpkt's
    `in_cksum_add` (little-endian words: the ones' complement sum is byte-order independent). Valid
    when the sum folds to 0xffff, i.e. is 0 modulo 0xffff (it is never 0: the protocol is in it);
    taken modulo directly because `in_cksum_done` folds only twice, too few for segments > 64 KiB.
    (The receiver's test: a field of 0xffff where 0x0000 is due is good, as in reader.py.)"""
    if first_frag or len(p) < t + tcplen:
        return CSUM_UNVERIFIABLE
    s = dpkt.in_cksum_add(dpkt.in_cksum_add(0, pseudo), p[t:t + tcplen])
    return CSUM_GOOD if s % 0xFFFF == 0 else CSUM_BAD


def _ipv6(p: bytes, l3: int, orig: int, frags: Reassembler | None = None, tun: list | None = None):
    """IPv6 at data offset `l3`, as `_ipv4`."""
    tun = tun or []
    n = len(p)
    try:
        ip6 = (_IP6 if n > 6 and p[6] == 6 else _IP6Hdr)(p)
    except dpkt.NeedData:
        return "truncated_ip_header"
    if ip6.v != 6:
        return "malformed_ip"
    pl = ip6.plen or max(orig - l3 - 40, 0)     # 0: jumbogram / TSO
    tcplen = pl
    first_frag = False
    if ip6.nxt == 6:
        t, tcp = 40, ip6.data
    else:
        nxt, t, nh_at = ip6.nxt, 40, 6
        while nxt != 6:
            if nxt not in _IP6_WALK:
                return _ip_payload(p, t, nxt, 6, ip6.src, ip6.dst, first_frag)
            if n < t + 8:
                return "truncated_ip_header"
            if nxt == 44:
                fh = d_ip6.IP6FragmentHeader(p[t:t + 8])
                if fh.nxt == 6 and (fh.frag_off or fh.m_flag):     # a fragment of a TCP datagram
                    if n < 40 + pl or 40 + pl < t + 8 or frags is None:
                        return "ip_fragment"
                    hdr = bytearray(p[:t])
                    hdr[nh_at] = 6
                    whole = frags.add((ip6.src + ip6.dst, fh.id, tuple(tun)), fh.frag_off * 8, bool(fh.m_flag),
                                      p[t + 8:40 + pl], bytes(hdr))
                    if whole is None:
                        return "ip_fragment"
                    h, pay = whole
                    if len(h) - 40 + len(pay) > 0xFFFF:
                        return "malformed_ip"
                    pkt = h[:4] + struct.pack(">H", len(h) - 40 + len(pay)) + h[6:] + pay
                    return _ipv6(pkt, 0, len(pkt), None, tun)
            nh_at = t
            if nxt == 44:
                if fh.frag_off:
                    return "ip_fragment"
                first_frag = bool(fh.m_flag)
                hl, nxt = 8, fh.nxt
            else:
                hl = (p[t + 1] + 2) * 4 if nxt == 51 else (p[t + 1] + 1) * 8
                nxt = p[t]
            t += hl
            tcplen -= hl
            if tcplen < 0:
                return "malformed_ip"
        end = 40 + ip6.plen if ip6.plen else n     # what dpkt's IP6 hands to TCP
        try:
            tcp = d_tcp.TCP(p[t:end])
        except dpkt.UnpackError:
            tcp = None
    r = _tcp_row(tcp, n - t, tcplen)
    if type(r) is str:
        return r
    cs = _csum(ip6.src + ip6.dst + struct.pack("!IxxxB", tcplen & 0xFFFFFFFF, 6), p, t, tcplen, first_frag)
    return (6, ip6.src, ip6.dst) + r + (40 + pl, first_frag, " / ".join(tun), cs, ip6.hlim, 0)


def decode_record(data: bytes, lt: int, orig: int, frags: Reassembler | None = None):
    """One record -> skip reason (str) or (family, src16, dst16, sport, dport, flags, seq, ack,
    win, plen, mss, wscale, sack_ok, has_ts, tsval, tsecr, ip_len, first_fragment, tunnel, csum, ttl, ipid)
    where tunnel is "" or the description of the encapsulations around the segment, outermost first,
    joined by " / " (the layout of reader.py's scalar parser, so the two compare directly)."""
    r = _link(data, lt)
    if type(r) is str:
        return r
    et, _, l3 = r
    return _net(data, l3, et, orig, 0 if lt == 1 else None, frags)


# --------------------------------------------------------------------------------------------
# input
# --------------------------------------------------------------------------------------------

class _Chunks(io.RawIOBase):
    """RawIOBase over reader._Decompressor (whose read() returns chunks of any size)."""

    def __init__(self, src):
        self._src = src
        self._left = b""

    def readable(self):
        return True

    def readinto(self, b):
        if not self._left:
            self._left = self._src.read(1 << 16)
            if not self._left:
                return 0
        k = min(len(b), len(self._left))
        b[:k] = self._left[:k]
        self._left = self._left[k:]
        return k


class _In:
    """Sequential input: read(n) returns n bytes, fewer only at the end; tracks the offset."""

    def __init__(self, f, name: str):
        self._f = f
        self.name = name
        self._pre = b""
        self.offset = 0
        self.error: str | None = None

    def unread(self, b: bytes) -> None:
        self._pre = b + self._pre
        self.offset -= len(b)

    def read(self, n: int) -> bytes:
        out = b""
        if self._pre:
            out, self._pre = self._pre[:n], self._pre[n:]
        if len(out) < n and self.error is None:
            try:
                out += self._f.read(n - len(out))
            except OSError as e:
                self.error = f"read error: {e}"
        self.offset += len(out)
        return out


# --------------------------------------------------------------------------------------------
# capture
# --------------------------------------------------------------------------------------------

class DpktCapture:
    """An opened capture decoded with dpkt. Use `open_capture_dpkt(path)`; iterate `batches()` once."""

    def __init__(self, path: str):
        self.info = CaptureInfo(path=path)
        self.notes: Counter = Counter()
        self.icmp = IcmpErrors()           # ICMP errors quoting TCP (capture/icmp.py)
        self._tunnel_ids = {"": 0}         # tunnel description -> the `tunnel` column (info.tunnels)
        self._files: list = []
        self._decomp = None
        self._consumed = False
        self._pending = None
        try:
            self._open(path)
        except CaptureError:
            self.close()
            raise
        except (OSError, EOFError, ValueError) as e:
            self.close()
            raise CaptureError(f"{path}: cannot read: {e}") from None

    # ---- opening ---------------------------------------------------------------------------
    def _open(self, path: str) -> None:
        name, raw, head, regular, comp = open_input(path, self._files)
        src = raw if regular else _Prefixed(head, raw)
        if comp is not None:
            self.info.compressed = True
            self._decomp = _Decompressor(src, comp)
            src = io.BufferedReader(_Chunks(self._decomp), 1 << 16)
        elif not regular:
            src = io.BufferedReader(src, 1 << 16)
        self._in = _In(src, name)
        magic = self._in.read(4)
        if not magic:
            err = (self._decomp.error if self._decomp else None) or self._in.error
            if err:
                raise CaptureError(f"{name}: cannot read {comp or ''} data ({err})")
            raise CaptureError(f"{name}: empty file" + (" (after decompression)" if comp else ""))
        self._in.unread(magic)
        m = int.from_bytes(magic, "big") if len(magic) == 4 else -1
        if m in _PCAP_MAGICS:
            self._open_pcap(name, m)
        elif magic == b"\x0a\x0d\x0d\x0a":
            self._open_pcapng(name)
        else:
            what = f" ({comp} content)" if comp else ""
            raise CaptureError(f"{name}: not a pcap or pcapng file{what} (magic {magic.hex() or 'none'})")

    def _open_pcap(self, name: str, magic: int) -> None:
        hdr = self._in.read(24)
        if len(hdr) < 24:
            raise CaptureError(f"{name}: truncated pcap header")
        self._in.unread(hdr)
        try:
            r = d_pcap.Reader(self._in)      # parses and checks the file header
        except (ValueError, dpkt.UnpackError) as e:
            raise CaptureError(f"{name}: not a pcap file ({e})") from None
        order, mult, res = _PCAP_MAGICS[magic]
        lt = r.datalink() & 0xFFFF
        self.info.format = "pcap"
        self.info.linktypes = [lt]
        self.info.ts_resolution = [res]
        self._pkthdr = d_pcap.MAGIC_TO_PKT_HDR[magic]
        self._order, self._mult, self._lt = order, mult, lt
        if lt not in _SUPPORTED_LT:
            self.info.warnings.append(unsupported_warning(lt))
        self._records = self._pcap_records()

    def _open_pcapng(self, name: str) -> None:
        self.info.format = "pcapng"
        head = self._in.read(12)
        self._in.unread(head)
        bom = int.from_bytes(head[8:12], "big") if len(head) == 12 else None
        if bom not in (d_ng.BYTE_ORDER_MAGIC, d_ng.BYTE_ORDER_MAGIC_LE):
            raise CaptureError(f"{name}: pcapng with a bad byte-order magic")
        self._ifaces: list[tuple] = []      # (linktype, mul, div, offset_ns, snaplen)
        self._name = name
        self._records = self._pcapng_records()
        self._pending = next(self._records)   # header blocks up to the first packet block

    # ---- record iterators: yield (ts, iface, linktype, data, orig), then ("end", kind, value)
    def _pcap_records(self):
        rd, ph = self._in.read, self._pkthdr
        mult, lt = self._mult, self._lt
        hl = ph.__hdr_len__
        while True:
            pos = self._in.offset
            h = rd(hl)
            if len(h) < hl:
                if len(h) >= 12 and int.from_bytes(h[8:12], "little" if self._order == "<" else "big") > _MAX_RECORD:
                    yield ("end", "corrupt", pos)
                elif h:
                    yield ("end", "truncated", len(h))
                else:
                    yield ("end", "eof", 0)
                return
            rh = ph(h)
            if rh.caplen > _MAX_RECORD:
                yield ("end", "corrupt", pos)
                return
            data = rd(rh.caplen)
            if len(data) < rh.caplen:
                yield ("end", "truncated", hl + len(data))
                return
            yield (rh.tv_sec * 1_000_000_000 + rh.tv_usec * mult, 0, lt, data, rh.len)

    def _add_iface(self, blk: bytes, le: bool) -> None:
        idb = (d_ng.InterfaceDescriptionBlockLE if le else d_ng.InterfaceDescriptionBlock)()
        idb.unpack_hdr(blk)
        opt_cls = d_ng.PcapngOptionLE if le else d_ng.PcapngOption
        order = "<" if le else ">"
        pow2, k, off = False, 6, 0
        o, oend = 16, len(blk) - 4
        while o + 4 <= oend:
            code, olen = struct.unpack_from(order + "HH", blk, o)   # for options dpkt cannot decode
            if code == 0 or o + 4 + olen > oend:
                break
            try:
                opt = opt_cls(blk[o:oend])
                code, val, size = opt.code, opt.data, len(opt)
            except (dpkt.UnpackError, UnicodeDecodeError):      # e.g. a non-UTF-8 comment
                val, size = b"", 4 + ((olen + 3) & ~3)
            if code == d_ng.PCAPNG_OPT_IF_TSRESOL and len(val) >= 1:
                pow2, k = bool(val[0] & 0x80), val[0] & 0x7F
            elif code == d_ng.PCAPNG_OPT_IF_TSOFFSET and len(val) >= 8:
                off = struct.unpack(order + "q", val[:8])[0]
            o += size
        if pow2:
            mul, div = 10 ** 9, 1 << k
        elif k <= 9:
            mul, div = 10 ** (9 - k), 1
        else:
            mul, div = 1, 10 ** (k - 9)
        lt = idb.linktype
        self._ifaces.append((lt, mul, div, off * 10 ** 9, idb.snaplen))
        self.info.linktypes.append(lt)
        self.info.ts_resolution.append(_tsres_name(pow2, k))
        if lt not in _SUPPORTED_LT:
            self.info.warnings.append(unsupported_warning(lt, len(self._ifaces) - 1))

    def _pcapng_records(self):
        rd = self._in.read
        le = True
        base = 0                 # global number of the section's first interface
        last_ts = 0
        seen_packet = False
        spb_warned = False
        while True:
            pos = self._in.offset
            h = rd(12)
            if len(h) < 12:
                yield ("end", "truncated", len(h)) if h else ("end", "eof", 0)
                return
            btype = int.from_bytes(h[:4], "little" if le else "big")
            if btype == d_ng.PCAPNG_BT_SHB:
                bom = int.from_bytes(h[8:12], "big")
                if bom == d_ng.BYTE_ORDER_MAGIC_LE:
                    le = True
                elif bom == d_ng.BYTE_ORDER_MAGIC:
                    le = False
                else:
                    yield self._ng_corrupt(pos, seen_packet)
                    return
            blen = int.from_bytes(h[4:8], "little" if le else "big")
            if blen < 12 or blen & 3 or blen > _MAX_RECORD:
                yield self._ng_corrupt(pos, seen_packet)
                return
            rest = rd(blen - 12)
            if len(rest) < blen - 12:
                yield ("end", "truncated", 12 + len(rest))
                return
            blk = h + rest
            if btype in (d_ng.PCAPNG_BT_EPB, d_ng.PCAPNG_BT_PB, d_ng.PCAPNG_BT_SPB):
                seen_packet = True
                if btype == d_ng.PCAPNG_BT_SPB:
                    if blen < 16:
                        yield self._ng_corrupt(pos, seen_packet)
                        return
                    orig = int.from_bytes(blk[8:12], "little" if le else "big")
                    cap = min(orig, blen - 16)
                    if len(self._ifaces) > base and self._ifaces[base][4]:
                        cap = min(cap, self._ifaces[base][4])
                    data, ifid, ticks = blk[12:12 + cap], 0, None
                    if not spb_warned:
                        spb_warned = True
                        self.info.warnings.append("simple packet blocks have no timestamp; using the previous record's")
                else:
                    if blen < 32:
                        yield self._ng_corrupt(pos, seen_packet)
                        return
                    if btype == d_ng.PCAPNG_BT_EPB:
                        cls = d_ng.EnhancedPacketBlockLE if le else d_ng.EnhancedPacketBlock
                    else:
                        cls = d_ng.PacketBlockLE if le else d_ng.PacketBlock
                    try:
                        b = cls(blk)
                    except (dpkt.UnpackError, UnicodeDecodeError):   # trailing length / bad comment
                        b = cls()
                        b.unpack_hdr(blk)
                    cap = min(b.caplen, blen - 32)
                    data, ifid, orig = blk[28:28 + cap], b.iface_id, b.pkt_len
                    ticks = (b.ts_high << 32) | b.ts_low
                nif = len(self._ifaces) - base
                g = ifid + base if ifid < nif else -1
                if g >= 0 and ticks is not None:
                    _lt, mul, div, off, _s = self._ifaces[g]
                    ts = min(max((ticks * mul) // div + off, _I64_MIN), _I64_MAX)
                else:
                    ts = last_ts
                last_ts = ts
                yield (ts, max(g, 0), self._ifaces[g][0] if g >= 0 else None, data, orig)
            elif btype == d_ng.PCAPNG_BT_IDB:
                if blen < 20:
                    yield self._ng_corrupt(pos, seen_packet)
                    return
                self._add_iface(blk, le)
            elif btype == d_ng.PCAPNG_BT_SHB:
                base = len(self._ifaces)

    def _ng_corrupt(self, pos: int, seen_packet: bool):
        if not self._ifaces and not seen_packet:
            raise CaptureError(f"{self._name}: corrupt pcapng header")
        return ("end", "corrupt", pos)

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
        rows: list[tuple] = []
        skipped: Counter = info.skipped
        end = None
        pending = self._pending
        self._pending = None
        records = self._records
        frags = Reassembler()                         # fragments of TCP datagrams (reader.py's store rules)
        while True:
            rec = pending if pending is not None else next(records)
            pending = None
            if rec[0] == "end":
                end = rec
                break
            ts, iface, lt, data, orig = rec
            info.records += 1
            if info.first_ts is None:
                info.first_ts = ts
            info.last_ts = ts
            r = "unknown_interface" if lt is None else decode_record(data, lt, orig, frags)
            if type(r) is str:
                skipped[r] += 1
                if r == "icmp" or r == "icmpv6":
                    e = icmp_error(data, lt)
                    if e is not None:
                        self.icmp.add(info.records, ts, e)
                continue
            if r[17]:
                self.notes["ip_fragment_first_used"] += 1
            if r[0] == 6 and r[16] > JUMBO_IP_LEN:
                self.notes["ipv6_jumbograms"] += 1
            rows.append((info.records, ts, iface) + r[:17] + (self._tunnel_number(r[18]),) + r[19:22])
            if len(rows) >= size:
                yield self._flush(rows)
                rows = []
        if rows:
            yield self._flush(rows)
        _, kind, value = end
        if kind == "corrupt":
            info.warnings.append(f"corrupt {'record header' if pcap else 'block'} at byte offset {value}; "
                                 "stopped reading")
        elif kind == "truncated":
            info.truncated = True
            info.warnings.append(f"file ends in the middle of a {'record' if pcap else 'block'} "
                                 f"({value} trailing bytes ignored)")
        err = (self._decomp.error if self._decomp else None) or self._in.error
        if err:
            info.truncated = True
            info.warnings.append(err)
        if self.notes["ip_fragment_first_used"]:
            info.warnings.append(f"{self.notes['ip_fragment_first_used']} first IP fragment(s) used without "
                                 "reassembly (their plen covers the first fragment only)")
        fragment_notes(frags, self.notes, info.warnings)

    def _tunnel_number(self, desc: str) -> int:
        """The `tunnel` column for a description: its position in info.tunnels, added at its first
        appearance; past the column's range (uint16) the last number is shared, with one warning."""
        k = self._tunnel_ids.get(desc)
        if k is None:
            tunnels = self.info.tunnels
            if len(tunnels) <= _MAX_TUNNEL_ID:
                k = len(tunnels)
                tunnels.append(desc)
            else:
                k = _MAX_TUNNEL_ID
                if len(self._tunnel_ids) == _MAX_TUNNEL_ID + 1:
                    self.info.warnings.append(f"more than {_MAX_TUNNEL_ID} distinct tunnels; later ones share "
                                              "the last tunnel number")
            self._tunnel_ids[desc] = k
        return k

    def _flush(self, rows: list[tuple]) -> Batch:
        cols = list(zip(*rows))
        out = {}
        for j, (name, dt) in enumerate(COLUMNS.items()):
            if name in ("src", "dst"):
                out[name] = np.frombuffer(b"".join(cols[j]), "V16").copy()
            elif dt == np.bool_:
                out[name] = np.array(cols[j], dtype=bool)
            else:
                out[name] = np.array(cols[j], dtype=np.int64).astype(dt)
        for j, (name, dt) in enumerate(_batch.EXTRA_COLUMNS.items(), len(COLUMNS)):     # tunnel, csum, ttl, ipid
            out[name] = np.array(cols[j], dtype=np.int64).astype(dt)
        count_checksums(self.info, out["csum"])
        self.info.tcp_segments += len(rows)
        return Batch(out)

    def close(self) -> None:
        for f in reversed(self._files):
            try:
                f.close()
            except Exception:
                pass
        self._files = []

    def __enter__(self) -> "DpktCapture":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_capture_dpkt(path: str) -> DpktCapture:
    """Open a pcap/pcapng file (optionally gzip/bz2/xz-compressed; `-` reads stdin) for decoding
    with dpkt. Same interface and results as `reader.open_capture`. Raises CaptureError."""
    return DpktCapture(path)
