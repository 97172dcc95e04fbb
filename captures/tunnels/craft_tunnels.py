#!/usr/bin/env python3
"""Write the crafted tunnel captures in captures/tunnels/ (byte-reproducible: fixed timestamps,
fixed IP ids, checksums computed by scapy).

    python captures/tunnels/craft_tunnels.py

Every capture holds one 9-segment TCP exchange (3-way handshake, data both ways, FIN/ACK both
ways) between the *inner* hosts 10.0.0.1:40000 -> 10.0.0.2:80 (2001:db8::1 / 2001:db8::2 for
IPv6 inner packets), carried in one encapsulation, plus non-TCP noise records (see NOISE).
Record i (0-based, file order) is stamped BASE s + i ms. tests/test_tunnels.py hard-codes the
expected rows, tunnel descriptions and skip counters independently of this script.
"""
from __future__ import annotations

import os
import struct

from scapy.all import ICMP, IP, TCP, UDP, Ether, IPv6, Raw
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III
from scapy.contrib.gtp import GTP_U_Header
from scapy.contrib.mpls import MPLS
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.l2 import GRE, ARP
from scapy.layers.ppp import PPP, PPPoE, PPPoED
from scapy.layers.vxlan import VXLAN

OUT = os.path.dirname(os.path.abspath(__file__))
BASE = 1_700_000_000
MAC_C, MAC_S = "02:00:00:00:00:01", "02:00:00:00:00:02"      # outer (or only) Ethernet
MAC_IC, MAC_IS = "02:00:00:00:01:01", "02:00:00:00:01:02"    # inner Ethernet (VXLAN, Geneve, ERSPAN, TEB)
IN4 = ("10.0.0.1", "10.0.0.2")
IN6 = ("2001:db8::1", "2001:db8::2")
OUT4 = ("192.0.2.1", "192.0.2.2")                             # tunnel endpoints
OUT6 = ("2001:db8:ffff::1", "2001:db8:ffff::2")
CPORT, SPORT = 40000, 80
REQ = b"GET / HTTP/1.0\r\n\r\n"                 # 18 bytes
RESP = b"HTTP/1.0 200 OK\r\n\r\nhello"          # 24 bytes

SYN_OPTS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (100, 0)), ("NOP", None), ("WScale", 7)]
SYNACK_OPTS = [("MSS", 1400), ("SAckOK", b""), ("Timestamp", (200, 100)), ("NOP", None), ("WScale", 8)]


def ts_opt(a, b):
    return [("NOP", None), ("NOP", None), ("Timestamp", (a, b))]


# (client_to_server, flags, seq, ack, win, options, payload)
EXCHANGE = [
    (True, "S", 1000, 0, 64240, SYN_OPTS, b""),
    (False, "SA", 5000, 1001, 65160, SYNACK_OPTS, b""),
    (True, "A", 1001, 5001, 502, ts_opt(101, 200), b""),
    (True, "PA", 1001, 5001, 502, ts_opt(102, 200), REQ),
    (False, "A", 5001, 1019, 510, ts_opt(201, 102), b""),
    (False, "PA", 5001, 1019, 510, ts_opt(202, 102), RESP),
    (True, "FA", 1019, 5025, 502, ts_opt(103, 202), b""),
    (False, "FA", 5025, 1020, 510, ts_opt(203, 103), b""),
    (True, "A", 1020, 5026, 502, ts_opt(104, 203), b""),
]


def inner(k: int, v6: bool = False):
    """Inner IP packet of exchange segment k."""
    c2s, fl, seq, ack, win, opts, pay = EXCHANGE[k]
    a, b = IN6 if v6 else IN4
    if not c2s:
        a, b = b, a
    tcp = TCP(sport=CPORT if c2s else SPORT, dport=SPORT if c2s else CPORT, flags=fl, seq=seq, ack=ack,
              window=win, options=opts) / (Raw(pay) if pay else b"")
    return (IPv6(src=a, dst=b, hlim=64) if v6 else IP(src=a, dst=b, id=1, ttl=64)) / tcp


def inner_icmp(v6: bool = False):
    if v6:
        from scapy.layers.inet6 import ICMPv6EchoRequest
        return IPv6(src=IN6[0], dst=IN6[1]) / ICMPv6EchoRequest(id=1, seq=1)
    return IP(src=IN4[0], dst=IN4[1], id=2) / ICMP(id=1, seq=1)


def inner_udp(v6: bool = False):
    ip = IPv6(src=IN6[0], dst=IN6[1]) if v6 else IP(src=IN4[0], dst=IN4[1], id=3)
    return ip / UDP(sport=5353, dport=53) / DNS(id=7, rd=1, qd=DNSQR(qname="example.com"))


def write(name: str, frames: list, linktype: int = 1) -> None:
    """Little-endian microsecond pcap, snaplen 65535; record i stamped BASE s + i ms."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)]
    for i, f in enumerate(frames):
        raw = bytes(f)
        out.append(struct.pack("<IIII", BASE, i * 1000, len(raw), len(raw)) + raw)
    with open(os.path.join(OUT, name), "wb") as fh:
        fh.write(b"".join(out))


def layout(wrap, noise: list) -> list:
    """noise[0], E1, E2, noise[1], E3, E4, noise[2], E5 ... E9, rest of noise; wrap(pkt, c2s)."""
    out, it = [], iter(noise)
    for k in range(9):
        if k % 2 == 0:
            nz = next(it, None)
            if nz is not None:
                out.append(nz)
        out.append(wrap(k))
    out.extend(it)
    return out


def eth(c2s: bool = True):
    return Ether(src=MAC_C, dst=MAC_S) if c2s else Ether(src=MAC_S, dst=MAC_C)


def ieth(c2s: bool = True):
    return Ether(src=MAC_IC, dst=MAC_IS) if c2s else Ether(src=MAC_IS, dst=MAC_IC)


def c2s_of(k: int) -> bool:
    return EXCHANGE[k][0]


def outer4(c2s: bool, proto=None, src=OUT4[0], dst=OUT4[1]):
    a, b = (src, dst) if c2s else (dst, src)
    kw = {} if proto is None else {"proto": proto}
    return IP(src=a, dst=b, id=1, ttl=64, **kw)


def outer6(c2s: bool, nh=None):
    a, b = OUT6 if c2s else OUT6[::-1]
    kw = {} if nh is None else {"nh": nh}
    return IPv6(src=a, dst=b, hlim=64, **kw)


def main() -> None:
    # MPLS: two labels client->server, one label server->client
    def mpls(k, p=None):
        c2s = True if p is not None else c2s_of(k)
        p = inner(k) if p is None else p
        labels = MPLS(label=100, s=0, ttl=64) / MPLS(label=200, s=1, ttl=64) if c2s else MPLS(label=300, s=1, ttl=64)
        return eth(c2s) / labels / p
    write("mpls.pcap", layout(mpls, [mpls(0, inner_icmp()), mpls(0, inner_udp()),
                                     Ether(src=MAC_C, dst=MAC_S) / ARP(psrc="10.0.0.1", pdst="10.0.0.2")]))

    # PPPoE session (+ a PPP LCP echo and a PPPoE discovery frame: non_ip)
    def pppoe(k, p=None):
        c2s = True if p is not None else c2s_of(k)
        p = inner(k) if p is None else p
        return eth(c2s) / PPPoE(sessionid=0x1234) / PPP(proto=0x0021) / p
    lcp = eth() / PPPoE(sessionid=0x1234) / PPP(proto=0xC021) / Raw(bytes.fromhex("09010008deadbeef"))
    padi = eth() / PPPoED(code=0x09, sessionid=0) / Raw(bytes.fromhex("01010000"))
    write("pppoe.pcap", layout(pppoe, [pppoe(0, inner_icmp()), lcp, padi, pppoe(0, inner_udp())]))

    # GRE carrying IPv4, with a key
    def gre(k, p=None):
        c2s = True if p is not None else c2s_of(k)
        p = inner(k) if p is None else p
        return eth(c2s) / outer4(c2s) / GRE(key_present=1, key=7, proto=0x0800) / p
    write("gre.pcap", layout(gre, [gre(0, inner_icmp()), gre(0, inner_udp())]))

    # GRE transparent Ethernet bridging (0x6558)
    def gre_eth(k):
        c2s = c2s_of(k)
        return eth(c2s) / outer4(c2s) / GRE(proto=0x6558) / ieth(c2s) / inner(k)
    write("gre_eth.pcap", layout(gre_eth, []))

    # ERSPAN type II (GRE with sequence number, protocol 0x88be)
    def erspan2(k):
        c2s = c2s_of(k)
        return (eth(c2s) / outer4(c2s) / GRE(seqnum_present=1, seqence_number=k, proto=0x88BE)
                / ERSPAN_II(session_id=5, index=0) / ieth(c2s) / inner(k))
    write("erspan2.pcap", layout(erspan2, []))

    # ERSPAN type III (protocol 0x22eb), no platform-specific subheader
    def erspan3(k):
        c2s = c2s_of(k)
        return (eth(c2s) / outer4(c2s) / GRE(seqnum_present=1, seqence_number=k, proto=0x22EB)
                / ERSPAN_III(session_id=6, timestamp=1000 + k, o=0) / ieth(c2s) / inner(k))
    write("erspan3.pcap", layout(erspan3, []))

    # VXLAN (each direction with its own hashed source port)
    def vxlan(k, p=None):
        c2s = True if p is not None else c2s_of(k)
        p = inner(k) if p is None else p
        return (eth(c2s) / outer4(c2s) / UDP(sport=51234 if c2s else 49152, dport=4789) / VXLAN(vni=42, flags=0x08)
                / ieth(c2s) / p)
    not_vxlan = eth() / outer4(True) / UDP(sport=51234, dport=4789) / Raw(b"abc")   # too short: plain UDP
    write("vxlan.pcap", layout(vxlan, [vxlan(0, inner_icmp()), vxlan(0, inner_udp()), not_vxlan]))

    # Geneve over IPv6 with one 8-byte option, inner Ethernet
    def geneve(k):
        c2s = c2s_of(k)
        opt = struct.pack("!HBB", 0x0102, 0x80, 1) + b"\x00\x00\x00\x2a"   # class, type, length (1 word)
        g = Raw(struct.pack("!BBHI", 2, 0, 0x6558, 4242 << 8) + opt)        # version 0, 2 option words
        return eth(c2s) / outer6(c2s) / UDP(sport=50000 if c2s else 50001, dport=6081) / g / ieth(c2s) / inner(k)
    write("geneve.pcap", layout(geneve, []))

    # GTP-U: client->server with a sequence number (S flag), server->client without
    def gtpu(k, p=None):
        c2s = True if p is not None else c2s_of(k)
        p = inner(k) if p is None else p
        g = GTP_U_Header(gtp_type=255, teid=0x1000 if c2s else 0x2000, S=1 if c2s else 0,
                         seq=k if c2s else None)
        return eth(c2s) / outer4(c2s) / UDP(sport=2152, dport=2152) / g / p
    echo = eth() / outer4(True) / UDP(sport=2152, dport=2152) / GTP_U_Header(gtp_type=1, teid=0, S=1, seq=9)
    write("gtpu.pcap", layout(gtpu, [gtpu(0, inner_icmp()), echo, gtpu(0, inner_udp())]))

    # IP-in-IP: 4in4, 6in4 (protocol 41), 4in6 (next header 4)
    def ipip(k):
        c2s = c2s_of(k)
        return eth(c2s) / outer4(c2s, proto=4) / inner(k)
    write("ipip.pcap", layout(ipip, [eth() / outer4(True, proto=4) / inner_icmp()]))

    def sit(k):
        c2s = c2s_of(k)
        return eth(c2s) / outer4(c2s, proto=41) / inner(k, v6=True)
    write("6in4.pcap", layout(sit, [eth() / outer4(True, proto=41) / inner_icmp(v6=True)]))

    def ip4in6(k):
        c2s = c2s_of(k)
        return eth(c2s) / outer6(c2s, nh=4) / inner(k)
    write("4in6.pcap", layout(ip4in6, []))

    # Teredo (UDP 3544): IPv6 in UDP/IPv4; the SYN+ACK carries an origin indication header
    def teredo(k):
        c2s = c2s_of(k)
        pre = b""
        if k == 1:
            pre = struct.pack("!HH", 0, 51000 ^ 0xFFFF) + bytes(b ^ 0xFF for b in bytes([198, 51, 100, 1]))
        a, b = ("198.51.100.1", OUT4[1]) if c2s else (OUT4[1], "198.51.100.1")
        u = UDP(sport=51000 if c2s else 3544, dport=3544 if c2s else 51000)
        return eth(c2s) / IP(src=a, dst=b, id=1) / u / Raw(pre + bytes(inner(k, v6=True)))
    write("teredo.pcap", layout(teredo, []))

    # Nested: Ethernet / MPLS / IPv4 / GRE / IPv4 / UDP / VXLAN / Ethernet / IPv4 / TCP
    def nested(k):
        c2s = c2s_of(k)
        return (eth(c2s) / MPLS(label=16, s=1, ttl=64) / outer4(c2s) / GRE(proto=0x0800)
                / outer4(c2s, src="198.18.0.1", dst="198.18.0.2") / UDP(sport=51234 if c2s else 49152, dport=4789)
                / VXLAN(vni=7, flags=0x08) / ieth(c2s) / inner(k))
    write("nested.pcap", layout(nested, []))


if __name__ == "__main__":
    main()
