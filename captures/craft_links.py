#!/usr/bin/env python3
"""Write the small crafted captures in captures/links/ (reproducible: fixed timestamps).

    python captures/craft_links.py

Every capture holds the same 9-segment TCP exchange (3-way handshake, data both
ways, FIN/ACK both ways) interleaved with non-TCP "noise" records that exercise
the skip counters. Record layout (see `interleave`): noise[0], E1, E2, noise[1],
E3, E4, noise[2], E5, E6, noise[3], E7, E8, noise[4], E9, noise[5:]...

Timestamps of record i (0-based, in file order):
  microsecond files: BASE s + 123456 us + i * 1001 us
  nanosecond files:  BASE s + 123456789 ns + i * 1000001 ns
tests/test_capture.py hard-codes the same expectations independently.
"""
from __future__ import annotations

import gzip
import io
import os
import struct
import sys
import zlib

from scapy.all import (ARP, ICMP, IP, TCP, UDP, Dot1Q, Ether, ICMPv6EchoRequest, IPv6,  # noqa: E402
                       IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, Raw)
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1AD
from scapy.utils import PcapWriter

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "links")
BASE = 1_700_000_000
MAC_C, MAC_S = "02:00:00:00:00:01", "02:00:00:00:00:02"
V4 = ("10.0.0.1", "10.0.0.2")
V6 = ("2001:db8::1", "2001:db8::2")
CPORT, SPORT = 40000, 80
REQ = b"GET / HTTP/1.0\r\n\r\n"                 # 18 bytes
RESP = b"HTTP/1.0 200 OK\r\n\r\nhello"          # 24 bytes

SYN_OPTS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (100, 0)), ("NOP", None), ("WScale", 7)]
SYNACK_OPTS = [("MSS", 1400), ("SAckOK", b""), ("Timestamp", (200, 100)), ("NOP", None), ("WScale", 8)]
# For the snaplen-74 capture: timestamps last, so a 74-byte snaplen cuts them in the middle.
SYN_OPTS_TS_LAST = [("MSS", 1460), ("NOP", None), ("NOP", None), ("SAckOK", b""), ("NOP", None),
                    ("WScale", 7), ("Timestamp", (100, 0))]
SYNACK_OPTS_TS_LAST = [("MSS", 1400), ("NOP", None), ("NOP", None), ("SAckOK", b""), ("NOP", None),
                       ("WScale", 8), ("Timestamp", (200, 100))]


def ts_opt(a, b):
    return [("NOP", None), ("NOP", None), ("Timestamp", (a, b))]


# (client_to_server, flags, seq, ack, win, options, payload)
def exchange_spec(ts_last: bool = False):
    syn_o, synack_o = (SYN_OPTS_TS_LAST, SYNACK_OPTS_TS_LAST) if ts_last else (SYN_OPTS, SYNACK_OPTS)
    return [
        (True, "S", 1000, 0, 64240, syn_o, b""),
        (False, "SA", 5000, 1001, 65160, synack_o, b""),
        (True, "A", 1001, 5001, 502, ts_opt(101, 200), b""),
        (True, "PA", 1001, 5001, 502, ts_opt(102, 200), REQ),
        (False, "A", 5001, 1019, 510, ts_opt(201, 102), b""),
        (False, "PA", 5001, 1019, 510, ts_opt(202, 102), RESP),
        (True, "FA", 1019, 5025, 502, ts_opt(103, 202), b""),
        (False, "FA", 5025, 1020, 510, ts_opt(203, 103), b""),
        (True, "A", 1020, 5026, 502, ts_opt(104, 203), b""),
    ]


def ip_layer(c2s: bool, v6: bool, ext: bool = False):
    a, b = (V6 if v6 else V4) if c2s else tuple(reversed(V6 if v6 else V4))
    if v6:
        l3 = IPv6(src=a, dst=b, hlim=64)
        if ext:
            l3 = l3 / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
        return l3
    return IP(src=a, dst=b, ttl=64, id=0x1234, flags="DF")


def exchange(v6=False, ext=False, ts_last=False):
    """The 9 TCP segments as (c2s, scapy IP-layer packet)."""
    out = []
    for c2s, fl, seq, ack, win, opts, data in exchange_spec(ts_last):
        sp, dp = (CPORT, SPORT) if c2s else (SPORT, CPORT)
        p = ip_layer(c2s, v6, ext) / TCP(sport=sp, dport=dp, flags=fl, seq=seq, ack=ack, window=win, options=opts)
        if data:
            p = p / Raw(data)
        out.append((c2s, p))
    return out


def noise_v4():
    """IP-layer noise (name = the skip reason the reader must report)."""
    a, b = V4
    return [
        ("udp", IP(src=a, dst="10.0.0.53") / UDP(sport=5353, dport=53) / Raw(b"\x12\x34" + b"\x00" * 10)),
        ("icmp", IP(src=a, dst=b) / ICMP(id=1, seq=1)),
        ("ip_fragment", IP(src=a, dst=b, proto=6, frag=100) / Raw(b"x" * 16)),
        ("malformed_ip", IP(src=a, dst=b, ihl=4) / UDP(sport=1, dport=2)),     # IHL 4 < 5
        ("malformed_tcp", IP(src=a, dst=b) / TCP(sport=1, dport=2, dataofs=3, flags="A")),
    ]


def noise_v6():
    a, b = V6
    bad = IPv6(src=a, dst=b) / IPv6ExtHdrHopByHop(len=10) / TCP(sport=1, dport=2)   # ext header overruns payload
    return [
        ("udp", IPv6(src=a, dst=b) / UDP(sport=5353, dport=53) / Raw(b"\x00" * 12)),
        ("icmpv6", IPv6(src=a, dst=b) / ICMPv6EchoRequest()),
        ("ip_fragment", IPv6(src=a, dst=b) / IPv6ExtHdrFragment(nh=6, offset=10, id=7) / Raw(b"y" * 16)),
        ("malformed_ip", bad),
        ("malformed_tcp", IPv6(src=a, dst=b) / TCP(sport=1, dport=2, dataofs=3, flags="A")),
    ]


def interleave(exch, noise):
    """noise[0], E1, E2, noise[1], E3, E4, noise[2], ... , E9, remaining noise."""
    out, ni = [], iter(noise)
    for k, e in enumerate(exch):
        if k % 2 == 0:
            n = next(ni, None)
            if n is not None:
                out.append(n)
        out.append(e)
    out.extend(ni)
    return out


def eth(c2s):
    return Ether(src=MAC_C, dst=MAC_S) if c2s else Ether(src=MAC_S, dst=MAC_C)


def eth_frames(v6=False, ext=False, wrap=lambda c2s, p: Ether(src=MAC_C, dst=MAC_S) / p, link_noise=True,
               ts_last=False, extra_v4_noise=()):
    """Full frames: list of bytes, in file order."""
    exch = [bytes(wrap(c2s, p)) for c2s, p in exchange(v6, ext, ts_last)]
    noise = [bytes(wrap(True, p))
             for _, p in (noise_v6() if v6 else noise_v4())]
    if link_noise:
        noise.insert(0, bytes(wrap(True, ARP(hwsrc=MAC_C, psrc=V4[0], pdst=V4[1]))))
        noise.append(bytes(Ether(src=MAC_C, dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(b"\x02\x07\x04" + b"\0" * 20)))
    noise.extend(bytes(wrap(True, p)) for p in extra_v4_noise)
    return interleave(exch, noise)


def raw_frames(v6=False, prefix=lambda c2s, raw: raw):
    exch = [prefix(c2s, bytes(p)) for c2s, p in exchange(v6)]
    noise = [prefix(True, bytes(p)) for _, p in (noise_v6() if v6 else noise_v4())]
    return interleave(exch, noise)


# ---------------------------------------------------------------------------- writers
def write_pcap(name, linktype, frames, nano=False, endian="", snaplen=65535):
    path = os.path.join(OUT, name)
    w = PcapWriter(path, linktype=linktype, endianness=endian, nano=nano, snaplen=snaplen, sync=False)
    w.linktype = linktype             # scapy treats linktype 0 (NULL) as "unset"
    w.write_header(None)
    for i, f in enumerate(frames):
        if nano:
            tot = 123456789 + i * 1000001
            sec, frac = BASE + tot // 10**9, tot % 10**9
        else:
            tot = 123456 + i * 1001
            sec, frac = BASE + tot // 10**6, tot % 10**6
        cap = f[:snaplen]
        w.write_packet(cap, sec=sec, usec=frac, caplen=len(cap), wirelen=len(f))
    w.close()
    return path


def ng_block(order, btype, body):
    body = body + b"\0" * (-len(body) % 4)
    blen = 12 + len(body)
    return struct.pack(order + "II", btype, blen) + body + struct.pack(order + "I", blen)


def ng_opt(order, code, value):
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def ng_shb(order):
    return ng_block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def ng_idb(order, linktype, tsresol=None, tsoffset=None, snaplen=0, name=b""):
    opts = b""
    if name:
        opts += ng_opt(order, 2, name)
    if tsresol is not None:
        opts += ng_opt(order, 9, bytes([tsresol]))
    if tsoffset is not None:
        opts += ng_opt(order, 14, struct.pack(order + "q", tsoffset))
    if opts:
        opts += struct.pack(order + "HH", 0, 0)
    return ng_block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + opts)


def ng_epb(order, ifid, ticks, data, orig=None):
    body = struct.pack(order + "IIIII", ifid, ticks >> 32, ticks & 0xFFFFFFFF, len(data),
                       len(data) if orig is None else orig) + data
    return ng_block(order, 6, body)


def two_if_pcapng():
    """iface 0: Ethernet, microseconds (default tsresol); iface 1: raw IP, nanoseconds.
    Client->server segments on iface 0, server->client on iface 1; noise alternates."""
    o = "<"
    out = [ng_shb(o), ng_idb(o, 1, name=b"eth0"), ng_idb(o, 101, tsresol=9, name=b"tun0")]
    exch = [(0 if c2s else 1, p) for c2s, p in exchange()]
    noise = [(k % 2, p) for k, (_, p) in enumerate(noise_v4())]
    for i, (ifid, p) in enumerate(interleave(exch, noise)):
        if ifid == 0:
            data = bytes(Ether(src=MAC_C, dst=MAC_S) / p)
            ticks = (BASE * 10**6 + 123456 + i * 1001)
        else:
            data = bytes(p)
            ticks = BASE * 10**9 + 123456789 + i * 1000001
        out.append(ng_epb(o, ifid, ticks, data))
        if i == 3:   # a statistics block in the middle (must be ignored)
            out.append(ng_block(o, 5, struct.pack(o + "III", 0, 0, 0)))
    return b"".join(out)


def be_pcapng():
    """Big-endian pcapng, one Ethernet interface, tsresol 2^-24 with if_tsoffset = BASE s."""
    o = ">"
    out = [ng_shb(o), ng_idb(o, 1, tsresol=0x80 | 24, tsoffset=BASE)]
    for i, f in enumerate(eth_frames()):
        rel_ns = 123456789 + i * 1000001
        out.append(ng_epb(o, 0, (rel_ns << 24) // 10**9, f))
    return b"".join(out)


# ---------------------------------------------------------------------------- link types and encapsulations
# (issue 10) Each capture: the 9-segment exchange in its framing, interleaved with noise of that framing
# that must be skipped with a named reason; tests/test_links.py checks them against tshark -T fields.
ENCAPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "encaps")
MAC = {True: (bytes.fromhex("020000000001"), bytes.fromhex("020000000002")),
       False: (bytes.fromhex("020000000002"), bytes.fromhex("020000000001"))}   # c2s -> (src, dst)
SNAP_IP4 = bytes.fromhex("aaaa03000000") + b"\x08\x00"
SNAP_IP6 = bytes.fromhex("aaaa03000000") + b"\x86\xdd"


def snap(raw: bytes) -> bytes:
    return (SNAP_IP6 if raw[0] >> 4 == 6 else SNAP_IP4) + raw


def framed(prefix, v6=False, noise=()):
    """The exchange as raw IP wrapped by prefix(c2s, ip_bytes) -> frame, noise frames interleaved."""
    return interleave([prefix(c2s, bytes(p)) for c2s, p in exchange(v6)], list(noise))


def wlan_hdr(c2s: bool, qos: bool, prot: bool = False, subtype: int | None = None, ftype: int = 2) -> bytes:
    """802.11 header: client->AP frames ToDS, AP->client FromDS; QoS data adds QoS control."""
    sub = subtype if subtype is not None else (8 if qos else 0)
    fc0 = (sub << 4) | (ftype << 2)
    fc1 = (0x01 if c2s else 0x02) | (0x40 if prot else 0)
    src, dst = MAC[c2s]
    bssid = bytes.fromhex("02000000aaaa")
    a1, a2, a3 = (bssid, src, dst) if c2s else (dst, bssid, src)
    h = bytes([fc0, fc1]) + b"\x00\x00" + a1 + a2 + a3 + b"\x10\x00"
    if sub & 8:
        h += b"\x00\x00"
    return h


def wlan(c2s, raw, prot=False):
    return wlan_hdr(c2s, qos=c2s, prot=prot) + snap(raw)


def wlan_noise():
    return [wlan_hdr(True, True, prot=True) + bytes(16),                    # protected: "encrypted"
            wlan_hdr(True, False, subtype=4),                               # null data: non_ip
            bytes([0x80, 0]) + b"\0\0" + b"\xff" * 6 + MAC[True][0] * 2 + b"\0\0" + bytes(12),  # beacon
            wlan_hdr(False, False) + bytes.fromhex("aaaa03000000") + b"\x08\x06" + bytes(ARP())]


def radiotap_hdr() -> bytes:
    # version 0, pad, length 12, present = flags | rate | (no ext); flags 0, rate 2 (1 Mb/s), 2 pad bytes
    return struct.pack("<BBHI", 0, 0, 12, 0x06) + bytes([0x00, 0x02]) + b"\0\0"


def ppi_hdr(dlt: int) -> bytes:
    return struct.pack("<BBHI", 0, 0, 8, dlt)


def nflog(raw: bytes, prefix: bytes = b"tcpfsm") -> bytes:
    """NFLOG: family, version 0, resource id (BE), TLVs (little-endian length/type, padded to 4)."""
    fam = 10 if raw[0] >> 4 == 6 else 2

    def tlv(t, v):
        return struct.pack("<HH", 4 + len(v), t) + v + b"\0" * (-len(v) % 4)
    hw = 0x86DD if fam == 10 else 0x0800
    return (bytes([fam, 0]) + struct.pack(">H", 7) + tlv(1, struct.pack(">HBB", hw, 3, 0))
            + tlv(10, prefix + b"\0") + tlv(11, struct.pack(">I", 1)) + tlv(9, raw))


def fddi(c2s, raw):
    src, dst = MAC[c2s]
    return b"\x50" + dst + src + snap(raw)


def ppp(c2s, raw):
    proto = b"\x00\x57" if raw[0] >> 4 == 6 else b"\x00\x21"
    return (b"\xff\x03" + proto if c2s else proto) + raw   # address/control present one way only


def chdlc(c2s, raw):
    return (b"\x0f\x00" if c2s else b"\x8f\x00") + (b"\x86\xdd" if raw[0] >> 4 == 6 else b"\x08\x00") + raw


def dot3(c2s, raw):
    src, dst = MAC[c2s]
    body = snap(raw)
    return dst + src + struct.pack(">H", len(body)) + body


def write_links() -> None:
    """The link types of issue 10, one capture each in captures/links/."""
    v4n = [bytes(p) for _, p in noise_v4()]
    write_pcap("fddi.pcap", 10, framed(fddi, noise=[fddi(True, r) for r in v4n]
                                        + [b"\x50" + MAC[True][1] + MAC[True][0] + b"\x42\x42\x03" + bytes(35)]))
    write_pcap("wlan.pcap", 105, framed(wlan, noise=wlan_noise()))
    write_pcap("wlan_radiotap.pcap", 127, framed(lambda c, r: radiotap_hdr() + wlan(c, r),
                                                 noise=[radiotap_hdr() + f for f in wlan_noise()]))
    write_pcap("wlan_ppi.pcap", 192, framed(lambda c, r: ppi_hdr(105) + wlan(c, r), v6=True,
                                            noise=[ppi_hdr(105) + f for f in wlan_noise()]))
    write_pcap("nflog.pcap", 239, framed(lambda c, r: nflog(r), noise=[nflog(r) for r in v4n]))
    write_pcap("nflog6.pcap", 239, framed(lambda c, r: nflog(r), v6=True,
                                          noise=[nflog(bytes(p)) for _, p in noise_v6()]))
    write_pcap("ppp.pcap", 9, framed(ppp, noise=[ppp(True, r) for r in v4n]
                                     + [b"\xff\x03\xc0\x21\x01\x01\x00\x04"]))          # LCP: non_ip
    write_pcap("ppp_hdlc.pcap", 50, framed(lambda c, r: b"\xff\x03" + ppp(False, r), v6=True,
                                           noise=[b"\xff\x03\x80\x21\x01\x01\x00\x04"]))  # IPCP
    write_pcap("chdlc.pcap", 104, framed(chdlc, noise=[chdlc(True, r) for r in v4n]
                                         + [b"\x8f\x00\x80\x35" + bytes(20)]))             # SLARP
    write_pcap("chdlc_serial.pcap", 50, framed(chdlc, v6=True))
    # an IPv6 jumbogram (RFC 2675: payload length 0, hop-by-hop Jumbo Payload option) of 70000 data bytes,
    # captured with a 200-byte snaplen; counted in notes["ipv6_jumbograms"]
    from scapy.layers.inet6 import Jumbo
    jdata = 70000
    jumbo = (IPv6(src=V6[1], dst=V6[0], plen=0) / IPv6ExtHdrHopByHop(options=[Jumbo(jumboplen=8 + 32 + jdata)])
             / TCP(sport=SPORT, dport=CPORT, flags="A", seq=9000, ack=1019, window=510, options=ts_opt(300, 102))
             / Raw(b"j" * jdata))
    write_pcap("jumbo6.pcap", 1, interleave([bytes(eth(c) / p) for c, p in exchange(True)],
                                            [bytes(eth(False) / jumbo)]), snaplen=200)
    # IPv6 extension-header chains of any length: 11 headers before TCP on every segment
    from scapy.layers.inet6 import IPv6ExtHdrRouting

    def chain(c2s, p):
        ip6, tcp = p, p[TCP]
        hdrs = IPv6ExtHdrHopByHop()
        for k in range(9):
            hdrs = hdrs / (IPv6ExtHdrRouting(addresses=[], segleft=0) if k == 4 else IPv6ExtHdrDestOpt())
        hdrs = hdrs / IPv6ExtHdrFragment(m=0, offset=0, id=k)           # an atomic fragment (RFC 6946)
        return eth(c2s) / IPv6(src=ip6.src, dst=ip6.dst, hlim=64) / hdrs / tcp
    write_pcap("ipv6_ext_chain.pcap", 1, [bytes(chain(c, p)) for c, p in exchange(True)])
    write_pcap("dot3_snap.pcap", 1, framed(dot3, noise=[dot3(True, r) for r in v4n] + [
        bytes.fromhex("0180c2000000") + MAC[True][0] + struct.pack(">H", 38) + b"\x42\x42\x03" + bytes(35)]))


def ether_b(c2s, et: int, payload: bytes) -> bytes:
    src, dst = MAC[c2s]
    return dst + src + struct.pack(">H", et) + payload


def ip_et(raw: bytes) -> bytes:
    return b"\x86\xdd" if raw[0] >> 4 == 6 else b"\x08\x00"


def vntag(c2s, raw):            # VN-Tag: d/p bit, dst vif, loop, src vif (4 bytes), then the ethertype
    return ether_b(c2s, 0x8926, struct.pack(">HH", 0x8000 | 12, 7 if c2s else 9) + ip_et(raw) + raw)


def etag(c2s, raw):             # 802.1BR E-Tag: 6 bytes (E-PCP/DEI, ingress E-CID, GRP/E-CID, ...)
    return ether_b(c2s, 0x893F, struct.pack(">HHH", 0, 0x0123 if c2s else 0x0456, 0) + ip_et(raw) + raw)


def pbb(c2s, raw):              # 802.1ah: B-TAG (88a8) + I-TAG (88e7, I-SID) + the customer frame
    csrc, cdst = MAC[c2s]
    inner = cdst + csrc + ip_et(raw) + raw
    btag = struct.pack(">HH", 100, 0x88E7)
    itag = struct.pack(">I", 0x00ABCDEF if c2s else 0x00ABCDEF)
    return ether_b(c2s, 0x88A8, btag + itag + inner)


def fabricpath(c2s, raw):       # outer switch-id addresses, 0x8903, FTag/TTL, the classical frame
    csrc, cdst = MAC[c2s]
    outer_dst, outer_src = bytes.fromhex("020a00010000"), bytes.fromhex("020b00020000")
    if not c2s:
        outer_dst, outer_src = outer_src, outer_dst
    f = outer_dst + outer_src + b"\x89\x03" + struct.pack(">H", (1 << 6) | 32) + cdst + csrc + ip_et(raw) + raw
    return f + struct.pack("<I", zlib.crc32(f))            # FabricPath frames keep their FCS (Wireshark expects it)


def macsec(c2s, raw, encrypted=False):   # SecTAG: TCI/AN, SL, PN, SCI (when TCI.SC); ICV after the data
    tci = 0x20 | (0x0C if encrypted else 0)
    sci = MAC[c2s][0] + b"\x00\x01"
    body = ip_et(raw) + raw if not encrypted else bytes(len(raw) + 2)
    return ether_b(c2s, 0x88E5, bytes([tci, 0]) + struct.pack(">I", 1) + sci + body + bytes(16))


def nsh_hdr(nxt: int, spi: int = 42, si: int = 255) -> bytes:   # MD type 2, no metadata: length 2 words
    return bytes([0x00, 0x02, 0x02, nxt]) + struct.pack(">I", (spi << 8) | si)


def nsh(c2s, raw):
    """Client->server: NSH on Ethernet (0x894f) carrying IPv4; server->client: NSH carrying Ethernet
    inside VXLAN-GPE (UDP 4790) between two VTEPs."""
    if c2s:
        return ether_b(c2s, 0x894F, nsh_hdr(1) + raw)
    csrc, cdst = MAC[c2s]
    gpe = bytes([0x0C, 0, 0, 4]) + struct.pack(">I", 5000 << 8)
    outer = IP(src="192.0.2.1", dst="192.0.2.2", id=1) / UDP(sport=54321, dport=4790) / Raw(
        gpe + nsh_hdr(3, spi=43) + cdst + csrc + ip_et(raw) + raw)
    return ether_b(c2s, 0x0800, bytes(outer))


def teredo(c2s, raw):
    """IPv6 in UDP between a Teredo client (port 50123) and a relay (port 3545: not 3544), with an
    authentication indicator on the first client packet and an origin indication on every relay one."""
    ind = b""
    if c2s and raw[40 + 13] & 0x02:                          # the client's SYN
        ind = b"\x00\x01\x00\x00" + bytes(8) + b"\x00"      # auth: no id, no value, nonce, confirmation
    elif not c2s:
        ind = b"\x00\x00" + struct.pack(">H", 50123 ^ 0xFFFF) + bytes(a ^ 0xFF for a in (198, 51, 100, 7))
    a, b = ("198.51.100.7", "203.0.113.9") if c2s else ("203.0.113.9", "198.51.100.7")
    sp, dp = (50123, 3545) if c2s else (3545, 50123)
    return ether_b(c2s, 0x0800, bytes(IP(src=a, dst=b, id=2) / UDP(sport=sp, dport=dp) / Raw(ind + raw)))


def write_encaps() -> None:
    """The encapsulations of issue 10, one capture each in captures/encaps/ (not decoded by the dpkt engine)."""
    os.makedirs(ENCAPS, exist_ok=True)

    def w(name, frames):
        global OUT
        keep, OUT = OUT, ENCAPS
        try:
            write_pcap(name, 1, frames)
        finally:
            OUT = keep
    w("vntag.pcap", framed(vntag))
    w("etag.pcap", framed(etag, v6=True))
    w("pbb.pcap", framed(pbb))
    w("fabricpath.pcap", framed(fabricpath))
    w("macsec.pcap", framed(macsec, noise=[macsec(True, bytes(exchange()[3][1]), encrypted=True)]))
    w("nsh.pcap", framed(nsh, noise=[ether_b(True, 0x894F, nsh_hdr(0x99) + bytes(20))]))   # unknown next: non_ip
    dns = IP(src="198.51.100.7", dst="203.0.113.9") / UDP(sport=50123, dport=53) / Raw(b"\x60\x01" + bytes(30))
    w("teredo_anyport.pcap", framed(teredo, v6=True, noise=[ether_b(True, 0x0800, bytes(dns))]))
    # depth limit: the exchange in GRE nested 5 deep once (tunnel_too_deep), 4 deep otherwise
    def gre_nest(c2s, raw, depth=4):
        p = raw
        for _ in range(depth):
            p = bytes(IP(src="192.0.2.1", dst="192.0.2.2", proto=47, id=3) / Raw(b"\x00\x00" + ip_et(p) + p))
        return ether_b(c2s, 0x0800, p)
    w("depth_limit.pcap", framed(gre_nest, noise=[gre_nest(True, bytes(exchange()[0][1]), 5)]))


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    write_links()
    write_encaps()
    E = Ether(src=MAC_C, dst=MAC_S)

    def vlan(c2s, p):
        return eth(c2s) / Dot1Q(vlan=100) / p

    def qinq(c2s, p):
        if c2s:
            return Ether(src=MAC_C, dst=MAC_S, type=0x88A8) / Dot1AD(vlan=10) / Dot1Q(vlan=20) / p
        return Ether(src=MAC_S, dst=MAC_C, type=0x9100) / Dot1Q(vlan=10) / Dot1Q(vlan=20) / p

    def sll(c2s, p):
        return CookedLinux(pkttype=4 if c2s else 0, lladdrtype=1, lladdrlen=6,
                           src=bytes.fromhex("020000000001" if c2s else "020000000002") + b"\0\0") / p

    def sll2(c2s, p):
        return CookedLinuxV2(ifindex=2, lladdrtype=1, pkttype=4 if c2s else 0, lladdrlen=6,
                             src=bytes.fromhex("020000000001" if c2s else "020000000002") + b"\0\0") / p

    def plain(c2s, p):
        return (E if c2s else Ether(src=MAC_S, dst=MAC_C)) / p

    frames = eth_frames(wrap=plain)
    write_pcap("eth.pcap", 1, frames)
    write_pcap("nsec.pcap", 1, frames, nano=True)
    write_pcap("be.pcap", 1, frames, endian=">")
    with open(os.path.join(OUT, "eth.pcap"), "rb") as f:
        data = f.read()
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as g:
        g.write(data)
    with open(os.path.join(OUT, "eth.pcap.gz"), "wb") as f:
        f.write(buf.getvalue())
    with open(os.path.join(OUT, "truncated.pcap"), "wb") as f:
        f.write(data[:-10])                                     # cut 10 bytes into the last record

    write_pcap("vlan.pcap", 1, eth_frames(wrap=vlan))
    # QinQ: 88a8+8100 (client), 9100+8100 (server); plus the server FIN with 4 stacked tags
    qf = eth_frames(wrap=qinq)
    fin_idx = qf.index(bytes(qinq(False, exchange()[7][1])))
    qf[fin_idx] = bytes(Ether(src=MAC_S, dst=MAC_C, type=0x88A8) / Dot1AD(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3)
                        / Dot1Q(vlan=4) / exchange()[7][1])
    write_pcap("qinq.pcap", 1, qf)
    write_pcap("sll.pcap", 113, eth_frames(wrap=sll, link_noise=False)
               + [bytes(sll(True, ARP(hwsrc=MAC_C, psrc=V4[0], pdst=V4[1])))])
    write_pcap("sll2.pcap", 276, eth_frames(wrap=sll2, link_noise=False)
               + [bytes(sll2(True, ARP(hwsrc=MAC_C, psrc=V4[0], pdst=V4[1])))])
    write_pcap("raw.pcap", 101, raw_frames())
    write_pcap("raw6.pcap", 101, raw_frames(v6=True))
    # NULL: AF in the capturing host's byte order. null.pcap: little-endian file, AF 2;
    # null_be.pcap: big-endian file with big-endian AF, IPv6 (AF 24, OpenBSD).
    write_pcap("null.pcap", 0, raw_frames(prefix=lambda c, r: struct.pack("<I", 2) + r)
               + [struct.pack("<I", 17) + b"\0" * 20])             # AF 17: non_ip
    write_pcap("null_be.pcap", 0, raw_frames(v6=True, prefix=lambda c, r: struct.pack(">I", 24) + r),
               endian=">")
    # LOOP: AF always big-endian; IPv6 with AF 28 (FreeBSD) and 30 (macOS) alternating by direction
    write_pcap("loop.pcap", 108, raw_frames(v6=True, prefix=lambda c, r: struct.pack(">I", 28 if c else 30) + r))
    write_pcap("ipv6.pcap", 1, eth_frames(v6=True, wrap=plain))
    write_pcap("ipv6_ext.pcap", 1, eth_frames(v6=True, ext=True, wrap=plain))
    write_pcap("ipv6_vlan.pcap", 1, eth_frames(v6=True, wrap=vlan))
    # snaplen 54: no TCP options at all; one IPv4-with-options segment loses part of its TCP header
    ipopt = IP(src=V4[0], dst=V4[1], options=[b"\x01\x01\x01\x00"]) / TCP(sport=1, dport=2, flags="A")
    write_pcap("snap54.pcap", 1, eth_frames(wrap=plain, extra_v4_noise=[ipopt]), snaplen=54)
    write_pcap("snap74.pcap", 1, eth_frames(wrap=plain, ts_last=True), snaplen=74)

    # IP fragments: first fragments (MF, offset 0) with the TCP header are used, others skipped
    seg = TCP(sport=CPORT, dport=SPORT, flags="PA", seq=1, ack=2, window=100, options=ts_opt(5, 6)) / Raw(b"z" * 100)
    s = bytes(seg)
    f4a = IP(src=V4[0], dst=V4[1], proto=6, flags="MF", frag=0, id=9) / Raw(s[:48])
    f4b = IP(src=V4[0], dst=V4[1], proto=6, frag=6, id=9) / Raw(s[48:])
    f6a = IPv6(src=V6[0], dst=V6[1]) / IPv6ExtHdrFragment(nh=6, m=1, offset=0, id=9) / Raw(s[:48])
    f6b = IPv6(src=V6[0], dst=V6[1]) / IPv6ExtHdrFragment(nh=6, m=0, offset=6, id=9) / Raw(s[48:])
    write_pcap("ipfrag.pcap", 1, [bytes(E / p) for p in (f4a, f4b, f6a, f6b)])

    ng = two_if_pcapng()
    with open(os.path.join(OUT, "two_if.pcapng"), "wb") as f:
        f.write(ng)
    with open(os.path.join(OUT, "truncated.pcapng"), "wb") as f:
        f.write(ng[:-20])                                      # cut inside the last block
    with open(os.path.join(OUT, "be.pcapng"), "wb") as f:
        f.write(be_pcapng())
    print("wrote", len(os.listdir(OUT)), "files to", OUT)


if __name__ == "__main__":
    sys.exit(main())
