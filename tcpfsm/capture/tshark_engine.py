"""`--engine tshark`: decode a capture through Wireshark's tshark into the same columnar `Batch`es.

    cap = open_capture_tshark(path)            # same interface as reader.open_capture
    for batch in cap.batches(65536): ...
    cap.info                                   # CaptureInfo, complete once batches() is exhausted

Why tshark's `-T fields` output rather than pyshark packet objects: pyshark (the library the
project names) parses tshark's PDML per packet into Python objects, about 350 packets/s here,
i.e. tens of seconds for the small kernel captures and about an hour for bench/out/bench.pcap;
`tshark -T fields` read line by line through `subprocess` (an argument list, never a shell) does
the same decoding at tshark's own speed. So:

* the default path (`backend="fields"`) runs `tshark -T fields` directly;
* pyshark is used to locate the tshark binary (`pyshark.tshark.tshark.get_process_path`, which
  honours pyshark's config) and as the alternative `backend="pyshark"`, which extracts exactly
  the same fields from `pyshark.FileCapture` packets and feeds them through the same mapping
  (tests check both backends agree on the small captures).

Field mapping (tshark -> column): frame.number -> index; frame.time_epoch (parsed as a decimal
string, exact to the ns) -> ts; frame.interface_id -> iface (0 when absent, i.e. pcap);
innermost ip/ipv6 layer -> family, src, dst (IPv4 as ::ffff:a.b.c.d); tcp.srcport/dstport;
tcp.flags & 0x1ff -> flags; tcp.seq_raw, tcp.ack_raw; tcp.window_size_value (raw, unscaled) ->
win; tcp.len -> plen; tcp.options.mss_val -> mss (0 absent); tcp.options.wscale.shift -> wscale
(-1 absent); tcp.options.sack_perm present -> sack_ok; tcp.options.timestamp.tsval/tsecr ->
has_ts, tsval, tsecr (the last occurrence of a repeated option, like the fast reader); ip.len or
ipv6.plen + 40 -> ip_len; tcp.checksum.status (with tcp.check_checksum on) -> csum (same
numbering: 0 bad, 1 good, 2 unverified); the innermost ip.ttl / ipv6.hlim -> ttl; ip.id -> ipid (0 for IPv6); tunnel: rebuilt from frame.protocols and the outer layers' fields into
the fast reader's description strings (mpls, pppoe, gre, erspan2/3, vxlan, vxlan-gpe, geneve, gtpu, ipip,
6in4, 4in6, 6in6, teredo (the heuristic on, for any port), pbb, fabricpath, nsh; more than 4 nested:
"tunnel_too_deep"). Link types: those of capture/links.py too (fddi, wlan under radiotap/PPI, nflog,
ppp, chdlc; 802.11 protected frames and MACsec payloads tshark shows as data: "encrypted"). IP
reassembly is on, as in the fast reader (a TCP datagram's row is at the frame completing it; ip_len =
header + reassembled length, assuming no IPv6 extension header before the fragment header; IPv6
jumbograms take ipv6.opt.jumbo); TCP reassembly and TCP analysis are off.

What tshark cannot tell us exactly:

* info.linktypes / info.ts_resolution: filled from the pcap file header for (possibly
  compressed) pcap files; left empty for pcapng (tshark does not report interface link types
  as DLT numbers).
* skip reasons are derived from frame.protocols (+ fragment offsets, the presence of the TCP
  header fields, cap_len): arp, non_ip, udp, icmp, icmpv6, other_ip_proto, ip_fragment and
  unsupported_linktype map one to one; "malformed_ip" is any IP layer tshark could not get
  past and "malformed_tcp" a TCP layer without a complete header ("truncated_*" only when
  frame.cap_len < frame.len), so those four can be distributed differently from the fast reader's
  on damaged or snaplen-cut records; "tunnel_error" is never produced (tshark shows a broken
  encapsulation as whatever layer it stopped at).
* info.truncated / warnings: a file ending mid-record only shows as tshark's exit status and
  stderr, reported as one warning.
"""
from __future__ import annotations

import bz2
import gzip
import ipaddress
import lzma
import os
import shutil
import struct
import subprocess
from collections import Counter
from typing import Iterator

import numpy as np

from .icmp import IcmpErrors
from .batch import (ALL_COLUMNS, CSUM_BAD, CSUM_GOOD, CSUM_UNVERIFIABLE, Batch, CaptureError, CaptureInfo,
                    count_checksums)

__all__ = ["open_capture_tshark", "TsharkCapture", "tshark_path", "FIELDS"]

NOT_FOUND = "tshark not found: install Debian's tshark package (apt-get install tshark) or use the default engine"

FIELDS = (
    "frame.number", "frame.time_epoch", "frame.interface_id", "frame.len", "frame.cap_len", "frame.protocols",
    "eth.src", "eth.dst", "mpls.label", "pppoe.session_id",
    "ip.src", "ip.dst", "ip.len", "ip.hdr_len", "ip.frag_offset", "ip.flags.mf",
    "ipv6.src", "ipv6.dst", "ipv6.plen", "ipv6.fraghdr.offset",
    "udp.srcport", "udp.dstport", "gre.key", "erspan.version", "erspan.spanid", "vxlan.vni", "geneve.vni",
    "gtp.teid", "ip.proto", "ip.reassembled.length", "ipv6.reassembled.length", "ipv6.fraghdr.nxt", "ipv6.opt.jumbo",
    "wlan.fc.protected", "ieee8021ah.isid", "cfp.ftag", "cfp.swid", "cfp.sswid", "cfp.lid", "nsh.spi", "nsh.si",
    "tcp.srcport", "tcp.dstport", "tcp.flags", "tcp.seq_raw", "tcp.ack_raw", "tcp.window_size_value", "tcp.len",
    "tcp.hdr_len", "tcp.options.mss_val", "tcp.options.wscale.shift", "tcp.options.sack_perm",
    "tcp.options.timestamp.tsval", "tcp.options.timestamp.tsecr", "tcp.checksum.status",
    "tcp.checksum", "tcp.checksum_calculated", "tcp.urgent_pointer", "ip.ttl", "ipv6.hlim", "ip.id",
    "icmp.type", "icmp.code", "icmp.mtu", "icmpv6.type", "icmpv6.code", "icmpv6.mtu", "ipv6.nxt", "tcp.seq",
)
PREFS = ("ip.defragment:TRUE", "ipv6.defragment:TRUE", "tcp.desegment_tcp_streams:FALSE",
         "tcp.analyze_sequence_numbers:FALSE", "tcp.relative_sequence_numbers:FALSE",
         "tcp.calculate_timestamps:FALSE", "tcp.try_heuristic_first:FALSE", "tcp.check_checksum:TRUE")

_MAPPED = b"\x00" * 10 + b"\xff\xff"
_LINKS = {"eth", "sll", "sll2", "null", "loop", "raw", "ip", "ipv6",   # first layers of link types we decode
          "fddi", "wlan", "radiotap", "ppi", "nflog", "ppp", "chdlc"}
_PASS = {"ethertype", "vlan", "ieee8021ad", "sll", "sll2", "null", "loop", "raw", "ppp", "fddi", "llc", "radiotap",
         "ppi", "wlan_radio", "nflog", "chdlc", "vntag", "etag", "macsec"}       # layers that only lead on
_MAX_DEPTH = 4                                                                # reader._MAX_TUNNEL_DEPTH
_EXT6 = {"ipv6.hopopts", "ipv6.routing", "ipv6.dstopts", "ipv6.fraghdr", "ah", "ipv6.shim6", "ipv6.nxt"}
_UDP_TUN = {"vxlan", "geneve", "gtp", "teredo"}


def tshark_path() -> str | None:
    """The tshark binary (pyshark's lookup, then PATH), or None."""
    try:
        from pyshark.tshark.tshark import get_process_path
        p = get_process_path()
        if p and os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    except Exception:            # pyshark missing or its lookup failed: fall back to PATH
        pass
    return shutil.which("tshark")


def _ip_text(v: str) -> str:
    return str(ipaddress.ip_address(v))


def _hp(ip: str, port) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _addr16(v: str) -> bytes:
    a = ipaddress.ip_address(v)
    return _MAPPED + a.packed if a.version == 4 else a.packed


def _int(v: str) -> int:
    return int(v, 0) if v[:2] in ("0x", "0X") else int(v)


def _ts_ns(t: str) -> int:
    """tshark's epoch seconds -> ns, held to the int64 range as the other engines hold it (a record time
    near 2**64 µs, which a damaged pcapng can carry, would not fit the ts column)."""
    neg = t.startswith("-")
    sec, _, frac = t.lstrip("-").partition(".")
    v = int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])
    return max(-(1 << 63), min(-v if neg else v, (1 << 63) - 1))


class _Rec:
    """One frame's fields: name -> list of values (all occurrences, outermost first)."""

    __slots__ = ("f", "used")

    def __init__(self, f: dict[str, list[str]]):
        self.f = f
        self.used = Counter()

    def all(self, name: str) -> list[str]:
        return self.f.get(name, [])

    def last(self, name: str):
        v = self.f.get(name)
        return v[-1] if v else None

    def take(self, name: str):
        """The next unconsumed occurrence of `name` (walking the layers outermost first)."""
        v = self.f.get(name, [])
        i = self.used[name]
        self.used[name] += 1
        return v[i] if i < len(v) else None


def _classify(r: _Rec):
    """-> ("tcp", family, tunnel description) or ("skip", reason)."""
    P = [p for p in r.last("frame.protocols").split(":")] if r.last("frame.protocols") else []
    if not P or P[0] not in _LINKS:
        return "skip", "unsupported_linktype"
    tun: list[str] = []
    fam = None
    i = 0
    eth_macs = None
    n = len(P)
    while i < n:
        if len(tun) > _MAX_DEPTH:
            return "skip", "tunnel_too_deep"
        p = P[i]
        if p == "eth":
            s, d = r.take("eth.src"), r.take("eth.dst")
            eth_macs = f" {s}->{d}" if s and d else ""
        elif p == "wlan" and r.last("wlan.fc.protected") in ("1", "True"):
            return "skip", "encrypted"
        elif p == "macsec" and i + 1 < n and P[i + 1] == "data":
            return "skip", "encrypted"             # (tshark shows the SecTAG's payload as data only when E or C)
        elif p == "ieee8021ad" and r.all("ieee8021ah.isid") and r.used["ieee8021ah.isid"] < len(r.all("ieee8021ah.isid")):
            tun.append(f"pbb{eth_macs or ''} isid {_int(r.take('ieee8021ah.isid'))}")
            eth_macs = None
        elif p in _PASS or p == "wlan":
            pass
        elif p == "cfp":                           # cfp.swid/sswid/lid: destination, then source
            sw, ss, li = (r.take(k) for k in ("cfp.swid", "cfp.sswid", "cfp.lid"))
            sw2, ss2, li2 = (r.take(k) for k in ("cfp.swid", "cfp.sswid", "cfp.lid"))
            ends = (f" {_int(sw2):03x}.{_int(ss2):02x}.{_int(li2):04x}->{_int(sw):03x}.{_int(ss):02x}.{_int(li):04x}"
                    if None not in (sw, ss, li, sw2, ss2, li2) else "")
            tun.append(f"fabricpath{ends} ftag {_int(r.take('cfp.ftag') or '0')}")
            eth_macs = None
        elif p == "nsh":
            tun.append(f"nsh{eth_macs or ''} spi {_int(r.take('nsh.spi') or '0')} si {_int(r.take('nsh.si') or '0')}")
            eth_macs = None
        elif p == "arp":
            return "skip", "arp"
        elif p == "mpls":
            labels = r.all("mpls.label")
            tun.append(f"mpls{eth_macs or ''} labels {','.join(str(_int(x)) for x in labels)}")
            eth_macs = None
        elif p == "pppoes":
            sid = r.last("pppoe.session_id")
            tun.append(f"pppoe{eth_macs or ''} session 0x{_int(sid or '0'):04x}")
            eth_macs = None
        elif p in ("ip", "ipv6"):
            eth_macs = None                        # (what an IP layer carries has no Ethernet header of its own)
            fam = 4 if p == "ip" else 6
            src, dst = (r.take("ip.src"), r.take("ip.dst")) if fam == 4 else (r.take("ipv6.src"), r.take("ipv6.dst"))
            # IP reassembly is on (the fast reader reassembles TCP datagrams): a fragment frame shows the
            # fragment as "data" (held), the frame completing a datagram the whole packet; the fast reader
            # reassembles TCP only, so a non-first fragment of anything else stays "ip_fragment"
            if fam == 4:
                fo = r.take("ip.frag_offset")
                mf = r.take("ip.flags.mf")
                r.take("ip.len")
                proto = r.take("ip.proto")
                later = bool(fo and int(fo))
                frag = mf in ("1", "True") or later
                if frag and (proto == "6" or later) and (i + 1 >= n or P[i + 1] != "tcp" or proto != "6"):
                    return "skip", "ip_fragment"
                frag = frag and proto != "6"       # (a reassembled TCP datagram is a whole packet)
            else:
                r.take("ipv6.plen")
                frag = False
            j = i + 1
            while j < n and P[j] in _EXT6:
                if P[j] == "ipv6.fraghdr":
                    fo = r.take("ipv6.fraghdr.offset")
                    nxt = r.take("ipv6.fraghdr.nxt")
                    later = bool(fo and int(fo))
                    if nxt == "6" and j + 1 < n and P[j + 1] == "tcp":
                        pass                       # a whole (reassembled, or atomic) TCP datagram
                    elif later or nxt == "6":
                        return "skip", "ip_fragment"
                    else:
                        frag = True
                j += 1
            if j >= n:
                if src is None:
                    return "skip", "truncated_ip_header" if _short(r) else "malformed_ip"
                return "skip", "malformed_ip"
            q = P[j]
            ep = f"{_ip_text(src)}->{_ip_text(dst)}" if src and dst else "?"
            if q == "tcp":
                return "tcp", fam, " / ".join(tun), frag
            if q in ("ip", "ipv6"):
                if frag:
                    return "skip", "ip_fragment"
                kind = {(4, "ip"): "ipip", (4, "ipv6"): "6in4", (6, "ip"): "4in6", (6, "ipv6"): "6in6"}[fam, q]
                tun.append(f"{kind} {ep}")
                i = j
                continue
            if q == "gre":
                if frag:
                    return "skip", "ip_fragment"
                key = r.take("gre.key")
                k = j + 1
                if k < n and P[k] == "erspan":
                    ver = r.take("erspan.version")
                    sid = r.take("erspan.spanid")
                    v = {"1": "erspan2", "2": "erspan3"}.get(str(_int(ver)) if ver else "", "erspan1")
                    tun.append(f"{v} {ep}" + (f" session {_int(sid)}" if sid is not None and v != "erspan1" else ""))
                    k += 1
                else:
                    tun.append(f"gre {ep}" + (f" key {_int(key)}" if key else ""))
                i = k
                continue
            if q == "udp":
                sp, dp = r.take("udp.srcport"), r.take("udp.dstport")
                k = j + 1
                t = P[k] if k < n else None
                if t == "nsh" and 4790 in (_int(sp or "0"), _int(dp or "0")) and r.all("vxlan.vni"):
                    if frag:
                        return "skip", "ip_fragment"
                    tun.append(f"vxlan-gpe {_hp(_ip_text(src), sp)}->{_hp(_ip_text(dst), dp)} vni "
                               f"{_int(r.take('vxlan.vni'))}")
                    i = k
                    continue
                if t not in _UDP_TUN or k + 1 >= n:      # not a tunnel, or no inner packet (e.g. GTP echo)
                    return "skip", "udp"
                field = {"vxlan": "vxlan.vni", "geneve": "geneve.vni", "gtp": "gtp.teid"}.get(t)
                if field and not r.all(field):
                    return "skip", "udp"
                if frag:
                    return "skip", "ip_fragment"
                uep = f"{_hp(_ip_text(src), sp)}->{_hp(_ip_text(dst), dp)}"
                if t == "vxlan":
                    tun.append(f"vxlan {uep} vni {_int(r.take('vxlan.vni'))}")
                elif t == "geneve":
                    tun.append(f"geneve {uep} vni {_int(r.take('geneve.vni'))}")
                elif t == "gtp":
                    tun.append(f"gtpu {uep} teid {_int(r.take('gtp.teid'))}")
                else:
                    tun.append(f"teredo {uep}")
                i = k + 1
                continue
            if q == "data" and frag:
                return "skip", "other_ip_proto"
            if q == "icmp":
                return "skip", "icmp"
            if q == "icmpv6":
                return "skip", "icmpv6"
            return "skip", "other_ip_proto"
        elif p in ("erspan", "gre", "vxlan", "geneve", "gtp", "teredo", "udp", "tcp"):
            return "skip", "non_ip"
        else:
            return "skip", "non_ip"
        i += 1
    return "skip", "non_ip"


def _short(r: _Rec) -> bool:
    try:
        return int(r.last("frame.cap_len")) < int(r.last("frame.len"))
    except (TypeError, ValueError):
        return False


def _row(r: _Rec, fam: int, frag: bool = False):
    """The TCP columns of a frame whose innermost packet is TCP, or a skip reason."""
    fl, hl, tl = r.last("tcp.flags"), r.last("tcp.hdr_len"), r.last("tcp.len")
    if tl is None and frag and hl is not None:     # first fragment: tshark leaves tcp.len out
        try:
            if fam == 4:
                tl = str(int(r.last("ip.len")) - int(r.last("ip.hdr_len")) - int(hl))
            elif r.last("frame.protocols").split(":ipv6:")[-1].split(":")[:2] == ["ipv6.fraghdr", "tcp"]:
                tl = str(int(r.last("ipv6.plen")) - 8 - int(hl))
        except (TypeError, ValueError):
            tl = None
    if fl is None or hl is None or tl is None or r.last("tcp.seq_raw") is None or int(hl) < 20 \
            or r.last("tcp.window_size_value") is None:
        return "truncated_tcp_header" if _short(r) and fl is None else "malformed_tcp"
    if _short(r) and r.last("tcp.urgent_pointer") is None:
        return "truncated_tcp_header"      # tshark decodes a cut fixed header as far as it goes; we need all 20 bytes
    if fam == 4:
        src, dst, iplen = r.last("ip.src"), r.last("ip.dst"), int(r.last("ip.len"))
        if r.last("ip.reassembled.length") is not None and r.last("ip.proto") == "6":
            iplen = int(r.last("ip.hdr_len")) + int(r.last("ip.reassembled.length"))
    else:
        src, dst, iplen = r.last("ipv6.src"), r.last("ipv6.dst"), int(r.last("ipv6.plen")) + 40
        if r.last("ipv6.reassembled.length") is not None:      # (no extension header before the fragment one)
            iplen = 40 + int(r.last("ipv6.reassembled.length"))
        elif iplen == 40 and r.last("ipv6.opt.jumbo") is not None:
            iplen = 40 + int(r.last("ipv6.opt.jumbo"))
    mss, ws, tsv, tse = (r.last(k) for k in ("tcp.options.mss_val", "tcp.options.wscale.shift",
                                             "tcp.options.timestamp.tsval", "tcp.options.timestamp.tsecr"))
    return (fam, _addr16(src), _addr16(dst), int(r.last("tcp.srcport")), int(r.last("tcp.dstport")),
            _int(fl) & 0x1FF, int(r.last("tcp.seq_raw")), int(r.last("tcp.ack_raw") or 0),
            int(r.last("tcp.window_size_value")), int(tl), int(mss) if mss else 0, min(int(ws), 127) if ws else -1,
            r.last("tcp.options.sack_perm") is not None, tsv is not None, int(tsv) if tsv else 0,
            int(tse) if tse else 0, iplen, _csum_status(r), int(r.last("ip.ttl" if fam == 4 else "ipv6.hlim") or 0),
            _int(r.last("ip.id")) if fam == 4 and r.last("ip.id") else 0)


_ICMP_ERR = {4: ("3", "11", "12"), 6: ("1", "2", "3", "4")}


def _icmp_row(r: _Rec):
    """An ICMP/ICMPv6 error quoting TCP, from tshark's fields (ip/icmp/ip/tcp or ipv6/icmpv6/ipv6/tcp right
    after the link layers: no tunnel, no extension header), as capture/icmp.py's row tuple, or None."""
    P = r.last("frame.protocols").split(":") if r.last("frame.protocols") else []
    i = next((j for j, p in enumerate(P) if p in ("ip", "ipv6")), None)
    if i is None or not all(p in _LINKS or p in _PASS for p in P[:i]):
        return None
    fam = 4 if P[i] == "ip" else 6
    if P[i:i + 4] != (["ip", "icmp", "ip", "tcp"] if fam == 4 else ["ipv6", "icmpv6", "ipv6", "tcp"]):
        return None
    try:
        if fam == 4:
            fo, mf = r.all("ip.frag_offset"), r.all("ip.flags.mf")
            if int(fo[0]) or mf[0] in ("1", "True") or int(fo[1]):
                return None
            typ, code = r.all("icmp.type")[0], r.all("icmp.code")[0]
            src, ttl = r.all("ip.src"), int(r.all("ip.ttl")[0])
            mtu = int(r.last("icmp.mtu") or 0) if typ == "3" and code == "4" else 0
        else:
            typ, code = r.all("icmpv6.type")[0], r.all("icmpv6.code")[0]
            src, ttl = r.all("ipv6.src"), int(r.all("ipv6.hlim")[0])
            mtu = int(r.last("icmpv6.mtu") or 0) if typ == "2" else 0
        # (tshark gives a TCP header quoted in ICMPv4 tcp.seq only; relative numbers are off: it is raw)
        seq = r.last("tcp.seq_raw") or r.last("tcp.seq")
        if typ not in _ICMP_ERR[fam] or len(src) < 2 or seq is None:
            return None
        dst = r.all("ip.dst" if fam == 4 else "ipv6.dst")
        return (fam, _addr16(src[0]), ttl, int(typ), int(code), mtu, _addr16(src[1]), _addr16(dst[1]),
                int(r.last("tcp.srcport")), int(r.last("tcp.dstport")), int(seq))
    except (IndexError, TypeError, ValueError):
        return None


def _csum_status(r: _Rec) -> int:
    """tcp.checksum.status (0 bad, 1 good, 2 unverified; 3 not present / 4 illegal do not occur for
    TCP) -> the csum column, which uses the same numbering. One exception: Wireshark calls a checksum
    field of 0xffff bad where 0x0000 is due ("should be 0x0000", RFC 1624), although it passes the
    receiver's test; the column follows the receiver (reader.py), so that case is good."""
    try:
        k = _int(r.last("tcp.checksum.status"))
    except (TypeError, ValueError):
        return CSUM_UNVERIFIABLE
    if k == CSUM_BAD and r.last("tcp.checksum") in ("0xffff", "0xFFFF", "65535") \
            and r.last("tcp.checksum_calculated") in ("0x0000", "0x0", "0"):
        return CSUM_GOOD
    return k if k in (CSUM_BAD, CSUM_GOOD) else CSUM_UNVERIFIABLE


_ROWCOLS = ("family", "src", "dst", "sport", "dport", "flags", "seq", "ack", "win", "plen", "mss", "wscale",
            "sack_ok", "has_ts", "tsval", "tsecr", "ip_len", "csum", "ttl", "ipid")


def _header_info(path: str, info: CaptureInfo) -> None:
    """format / compressed / (pcap) linktype and timestamp resolution from the file's first bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
        opener = None
        if head[:2] == b"\x1f\x8b":
            opener = gzip.open
        elif head[:3] == b"BZh":
            opener = bz2.open
        elif head[:6] == b"\xfd7zXZ\x00":
            opener = lzma.open
        if opener is not None:
            info.compressed = True
            with opener(path, "rb") as f:
                head = f.read(24)
        else:
            with open(path, "rb") as f:
                head = f.read(24)
    except (OSError, EOFError, ValueError, lzma.LZMAError):
        return
    magic = head[:4]
    if magic == b"\x0a\x0d\x0d\x0a":
        info.format = "pcapng"
    elif magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        info.format = "pcap"
        if len(head) >= 24:
            order = "<" if magic[0] in (0xD4, 0x4D) else ">"
            info.linktypes = [struct.unpack(order + "I", head[20:24])[0] & 0x0FFFFFFF]
            info.ts_resolution = ["ns" if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else "us"]


class TsharkCapture:
    """A capture decoded by tshark. Use `open_capture_tshark(path)`; iterate `batches()` once."""

    def __init__(self, path: str, backend: str = "fields"):
        if backend not in ("fields", "pyshark"):
            raise ValueError(f"unknown backend {backend!r}")
        self.info = CaptureInfo(path=path)
        self.icmp = IcmpErrors()           # ICMP errors quoting TCP (capture/icmp.py), from tshark's fields
        self.backend = backend
        self._tshark = tshark_path()
        if self._tshark is None:
            raise CaptureError(NOT_FOUND)
        if path == "-":
            raise CaptureError("the tshark engine cannot read stdin; use the default engine")
        if not os.path.exists(path):
            raise CaptureError(f"{path}: no such file")
        if os.path.isdir(path):
            raise CaptureError(f"{path}: is a directory")
        if not os.access(path, os.R_OK):
            raise CaptureError(f"{path}: permission denied")
        _header_info(path, self.info)
        self._consumed = False
        self._tunnels = {"": 0}

    # ---- frame sources: each yields {field: [values]} per frame
    def _fields_frames(self) -> Iterator[dict]:
        cmd = [self._tshark, "-r", self.info.path, "-n", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,",
               "-E", "separator=/t", "-E", "quote=n", "--enable-heuristic", "teredo_udp"]   # Teredo on any port
        for p in PREFS:
            cmd += ["-o", p]
        for f in FIELDS:
            cmd += ["-e", f]
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise CaptureError(NOT_FOUND) from None
        nf = len(FIELDS)
        try:
            for line in proc.stdout:
                vals = line.rstrip(b"\n").decode("utf-8", "replace").split("\t")
                if len(vals) < nf:
                    vals += [""] * (nf - len(vals))
                d = {}
                for name, v in zip(FIELDS, vals):
                    if v:
                        d[name] = [v] if name == "frame.protocols" else v.split(",")
                yield d
        finally:
            proc.stdout.close()
            err = proc.stderr.read().decode("utf-8", "replace")
            proc.stderr.close()
            rc = proc.wait()
        self._finish_status(rc, err)

    def _pyshark_frames(self) -> Iterator[dict]:
        import pyshark
        prefs = dict(p.split(":", 1) for p in PREFS)
        cap = pyshark.FileCapture(self.info.path, keep_packets=False, override_prefs=prefs,
                                  tshark_path=self._tshark, disable_protocol=None)
        try:
            for pkt in cap:
                d: dict[str, list[str]] = {}
                fi = pkt.frame_info
                for name in FIELDS:
                    proto, _, rest = name.partition(".")
                    key = rest.replace(".", "_")
                    layers = [fi] if proto == "frame" else [lay for lay in pkt.layers if lay.layer_name == proto]
                    vals = []
                    for lay in layers:
                        fld = lay.get_field(key)
                        if fld is None:
                            continue
                        for x in getattr(fld, "all_fields", [fld]):
                            vals.append(str(x.show))
                    if vals:
                        d[name] = vals
                yield d
        finally:
            cap.close()

    def _finish_status(self, rc: int, err: str) -> None:
        lines = [ln for ln in err.splitlines() if ln.strip() and "Running as user" not in ln]
        if rc != 0 or lines:
            msg = "; ".join(lines)[:300] or f"tshark exited with status {rc}"
            if rc != 0 and self.info.records == 0:
                raise CaptureError(f"{self.info.path}: tshark cannot read it: {msg}")
            self.info.truncated = self.info.truncated or rc != 0 or "cut short" in msg
            self.info.warnings.append(f"tshark: {msg}")

    # ---- public
    def batches(self, size: int = 65536) -> Iterator[Batch]:
        if self._consumed:
            raise CaptureError(f"{self.info.path}: capture already read (open it again)")
        self._consumed = True
        size = max(1, int(size))
        frames = self._fields_frames() if self.backend == "fields" else self._pyshark_frames()
        info = self.info
        rows: list = []
        meta: list = []
        for d in frames:
            r = _Rec(d)
            info.records += 1
            num = r.last("frame.number")
            t = r.last("frame.time_epoch")
            ts = _ts_ns(t) if t else 0
            if info.first_ts is None:
                info.first_ts = ts
            info.last_ts = ts
            c = _classify(r)
            if c[0] == "skip":
                info.skipped[c[1]] += 1
                if c[1] == "icmp" or c[1] == "icmpv6":
                    e = _icmp_row(r)
                    if e is not None:
                        self.icmp.add(int(num) if num else info.records, ts, e)
                continue
            row = _row(r, c[1], c[3])
            if type(row) is str:
                info.skipped[row] += 1
                continue
            desc = c[2]
            if desc not in self._tunnels:
                self._tunnels[desc] = min(len(self._tunnels), 65535)
                info.tunnels.append(desc)
            iface = r.last("frame.interface_id")
            rows.append(row)
            meta.append((int(num) if num else info.records, ts, int(iface) if iface else 0, self._tunnels[desc]))
            if len(rows) >= size:
                yield self._batch(rows, meta)
                rows, meta = [], []
        if rows:
            yield self._batch(rows, meta)

    def _batch(self, rows, meta) -> Batch:
        cols = list(zip(*rows))
        out = {}
        for j, name in enumerate(_ROWCOLS):
            if name in ("src", "dst"):
                out[name] = np.frombuffer(b"".join(cols[j]), "V16").copy()
            else:
                out[name] = np.array(cols[j], dtype=ALL_COLUMNS[name])
        m = list(zip(*meta))
        for j, name in enumerate(("index", "ts", "iface", "tunnel")):
            out[name] = np.array(m[j], dtype=ALL_COLUMNS[name])
        self.info.tcp_segments += len(rows)
        count_checksums(self.info, out["csum"])
        return Batch({k: out[k] for k in ALL_COLUMNS})

    def close(self) -> None:
        pass

    def __enter__(self) -> "TsharkCapture":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_capture_tshark(path: str, backend: str = "fields") -> TsharkCapture:
    """Open `path` for decoding through tshark (`backend="pyshark"`: through pyshark, slow).
    Raises CaptureError when tshark is not installed or cannot read the file."""
    return TsharkCapture(path, backend)
