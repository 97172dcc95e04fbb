"""Tunnels and encapsulations in the fast reader (captures/tunnels/ + in-memory edge cases)."""
from __future__ import annotations

import glob
import ipaddress
import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tcpfsm.capture.reader as reader
from tcpfsm.capture import ACK, FIN, PSH, SYN, SKIP_REASONS, open_capture
from tcpfsm.capture.batch import ALL_COLUMNS
from tcpfsm.fsm import get_profile
from tcpfsm.track.flowtable import FlowTable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUN = os.path.join(ROOT, "captures", "tunnels")
BASE = 1_700_000_000

C4, S4 = "10.0.0.1", "10.0.0.2"
C6, S6 = "2001:db8::1", "2001:db8::2"
# c2s, flags, seq, ack, win, plen, mss, wscale, sack_ok, tsval, tsecr  (every segment has timestamps)
EXCHANGE = [
    (True, SYN, 1000, 0, 64240, 0, 1460, 7, True, 100, 0),
    (False, SYN | ACK, 5000, 1001, 65160, 0, 1400, 8, True, 200, 100),
    (True, ACK, 1001, 5001, 502, 0, 0, -1, False, 101, 200),
    (True, PSH | ACK, 1001, 5001, 502, 18, 0, -1, False, 102, 200),
    (False, ACK, 5001, 1019, 510, 0, 0, -1, False, 201, 102),
    (False, PSH | ACK, 5001, 1019, 510, 24, 0, -1, False, 202, 102),
    (True, FIN | ACK, 1019, 5025, 502, 0, 0, -1, False, 103, 202),
    (False, FIN | ACK, 5025, 1020, 510, 0, 0, -1, False, 203, 103),
    (True, ACK, 1020, 5026, 502, 0, 0, -1, False, 104, 203),
]

M1, M2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
O1, O2 = "192.0.2.1", "192.0.2.2"
# name: (inner IPv6?, noise reasons in file order, tunnel c2s, tunnel s2c)
CASES = {
    "mpls.pcap": (False, ["icmp", "udp", "arp"],
                  f"mpls {M1}->{M2} labels 100,200", f"mpls {M2}->{M1} labels 300"),
    "pppoe.pcap": (False, ["icmp", "non_ip", "non_ip", "udp"],
                   f"pppoe {M1}->{M2} session 0x1234", f"pppoe {M2}->{M1} session 0x1234"),
    "gre.pcap": (False, ["icmp", "udp"], f"gre {O1}->{O2} key 7", f"gre {O2}->{O1} key 7"),
    "gre_eth.pcap": (False, [], f"gre {O1}->{O2}", f"gre {O2}->{O1}"),
    "erspan2.pcap": (False, [], f"erspan2 {O1}->{O2} session 5", f"erspan2 {O2}->{O1} session 5"),
    "erspan3.pcap": (False, [], f"erspan3 {O1}->{O2} session 6", f"erspan3 {O2}->{O1} session 6"),
    "vxlan.pcap": (False, ["icmp", "udp", "udp"],
                   f"vxlan {O1}:51234->{O2}:4789 vni 42", f"vxlan {O2}:49152->{O1}:4789 vni 42"),
    "geneve.pcap": (False, [], "geneve [2001:db8:ffff::1]:50000->[2001:db8:ffff::2]:6081 vni 4242",
                    "geneve [2001:db8:ffff::2]:50001->[2001:db8:ffff::1]:6081 vni 4242"),
    "gtpu.pcap": (False, ["icmp", "udp", "udp"],
                  f"gtpu {O1}:2152->{O2}:2152 teid 4096", f"gtpu {O2}:2152->{O1}:2152 teid 8192"),
    "ipip.pcap": (False, ["icmp"], f"ipip {O1}->{O2}", f"ipip {O2}->{O1}"),
    "6in4.pcap": (True, ["icmpv6"], f"6in4 {O1}->{O2}", f"6in4 {O2}->{O1}"),
    "4in6.pcap": (False, [], "4in6 2001:db8:ffff::1->2001:db8:ffff::2", "4in6 2001:db8:ffff::2->2001:db8:ffff::1"),
    "teredo.pcap": (True, [], f"teredo 198.51.100.1:51000->{O2}:3544", f"teredo {O2}:3544->198.51.100.1:51000"),
    "nested.pcap": (False, [],
                    f"mpls {M1}->{M2} labels 16 / gre {O1}->{O2} / vxlan 198.18.0.1:51234->198.18.0.2:4789 vni 7",
                    f"mpls {M2}->{M1} labels 16 / gre {O2}->{O1} / vxlan 198.18.0.2:49152->198.18.0.1:4789 vni 7"),
}


def mapped(ip):
    a = ipaddress.ip_address(ip)
    return (b"\0" * 10 + b"\xff\xff" + a.packed) if a.version == 4 else a.packed


def layout(noise):
    out, it = [], iter(noise)
    for k in range(9):
        if k % 2 == 0:
            n = next(it, None)
            if n is not None:
                out.append(n)
        out.append(k)
    out.extend(it)
    return out


def expected(name):
    v6, noise, _, _ = CASES[name]
    rows = []
    for i, item in enumerate(layout(noise)):
        if isinstance(item, str):
            continue
        c2s, fl, seq, ack, win, plen, mss, ws, sok, tsv, tse = EXCHANGE[item]
        a, b = (C6, S6) if v6 else (C4, S4)
        if not c2s:
            a, b = b, a
        thl = 40 if fl & SYN else 32
        rows.append(dict(index=i + 1, ts=(BASE * 10**6 + i * 1000) * 1000, iface=0, family=6 if v6 else 4,
                         src=mapped(a), dst=mapped(b), sport=40000 if c2s else 80, dport=80 if c2s else 40000,
                         flags=fl, seq=seq, ack=ack, win=win, plen=plen, mss=mss, wscale=ws, sack_ok=sok,
                         has_ts=True, tsval=tsv, tsecr=tse, ip_len=(40 if v6 else 20) + thl + plen,
                         tunnel=1 if c2s else 2, csum=1,     # scapy wrote correct inner checksums
                         ttl=64,                             # the inner TTL / hop limit craft_tunnels.py writes
                         ipid=0 if v6 else 1))               # scapy's default IP ID (IPv6: none)
    return rows


def read(path, size=65536):
    c = open_capture(path)
    return c, list(c.batches(size))


def to_rows(batches):
    out = []
    for b in batches:
        for k, dt in ALL_COLUMNS.items():
            assert b.cols[k].dtype == dt, k
        for i in range(len(b)):
            out.append({k: (bytes(b.cols[k][i]) if k in ("src", "dst") else b.cols[k][i].item())
                        for k in ALL_COLUMNS})
    return out


def test_every_tunnel_capture_is_covered():
    assert {os.path.basename(p) for p in glob.glob(os.path.join(TUN, "*.pcap"))} == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("size", [65536, 4])
def test_tunnel_capture(name, size):
    v6, noise, d_c2s, d_s2c = CASES[name]
    c, batches = read(os.path.join(TUN, name), size)
    assert to_rows(batches) == expected(name)
    info = c.info
    assert info.tunnels == ["", d_c2s, d_s2c]
    assert dict(info.skipped) == dict((r, noise.count(r)) for r in set(noise))
    assert info.records == len(noise) + 9 == info.tcp_segments + sum(info.skipped.values())
    assert not info.warnings and not info.truncated


@pytest.mark.parametrize("name", sorted(CASES))
def test_tunnel_scalar_path_agrees(name, monkeypatch):
    c1, b1 = read(os.path.join(TUN, name))
    monkeypatch.setattr(reader, "_FORCE_SCALAR", True)
    c2, b2 = read(os.path.join(TUN, name))
    assert to_rows(b1) == to_rows(b2)
    assert c1.info == c2.info


@pytest.mark.parametrize("name", sorted(CASES))
def test_inner_connection_is_tracked(name):
    v6 = CASES[name][0]
    _, batches = read(os.path.join(TUN, name))
    ft = FlowTable(get_profile())
    for b in batches:
        ft.feed_batch(b)
    ft.finish()
    assert len(ft.flows) == 1
    f = ft.flows[0]
    c, s = (C6, S6) if v6 else (C4, S4)
    assert (f.client_ip, f.client_port, f.server_ip, f.server_port) == (c, 40000, s, 80)
    assert not f.role_inferred
    assert [t.new.value for t in f.transitions if t.endpoint == "client"][:2] == ["SYN_SENT", "ESTABLISHED"]


# ------------------------------------------------------------------ in-memory edge cases

def pcap(frames, lt=1, snaplen=65535):
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, lt)]
    for i, f in enumerate(frames):
        c = f[:snaplen]
        out.append(struct.pack("<IIII", BASE, i, len(c), len(f)) + c)
    return b"".join(out)


def tcp_seg(sport=40000, dport=80, flags=SYN, seq=1000, payload=b""):
    return struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 1000, 0, 0) + payload


def ip4(payload, proto=6, src="10.0.0.1", dst="10.0.0.2", frag=0x4000):
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, frag, 64, proto, 0,
                       ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed) + payload


def ip6(payload, nh=6, src="2001:db8::1", dst="2001:db8::2"):
    return struct.pack("!IHBB16s16s", 0x60000000, len(payload), nh, 64, ipaddress.IPv6Address(src).packed,
                       ipaddress.IPv6Address(dst).packed) + payload


def udp(payload, sport, dport):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def ether(payload, et=0x0800):
    return b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + struct.pack("!H", et) + payload


def gre(payload, ptype=0x0800, flags=0):
    return struct.pack("!HH", flags, ptype) + payload


def vxlan(frame, vni=1):
    return struct.pack("!II", 0x08000000, vni << 8) + frame


def decode(tmp_path, frames, snaplen=65535, force=None, monkeypatch=None):
    p = tmp_path / "t.pcap"
    p.write_bytes(pcap(frames, snaplen=snaplen))
    c, b = read(str(p))
    rows = to_rows(b)
    assert c.info.records == c.info.tcp_segments + sum(c.info.skipped.values())
    assert set(c.info.skipped) <= set(SKIP_REASONS)
    return c, rows


def both_paths(tmp_path, monkeypatch, frames, snaplen=65535):
    c1, r1 = decode(tmp_path, frames, snaplen)
    with monkeypatch.context() as m:
        m.setattr(reader, "_FORCE_SCALAR", True)
        c2, r2 = decode(tmp_path, frames, snaplen)
    assert r1 == r2 and c1.info == c2.info
    return c1, r1


def nest_gre(pkt, depth):
    for _ in range(depth):
        pkt = ip4(gre(pkt), proto=47, src="192.0.2.1", dst="192.0.2.2")
    return pkt


def test_depth_limit(tmp_path, monkeypatch):
    inner = ip4(tcp_seg())
    ok = ether(nest_gre(inner, 4))
    deep = ether(nest_gre(inner, 5))
    c, rows = both_paths(tmp_path, monkeypatch, [ok, deep])
    assert len(rows) == 1 and rows[0]["index"] == 1
    assert c.info.tunnels[1] == " / ".join(["gre 192.0.2.1->192.0.2.2"] * 4)
    assert dict(c.info.skipped) == {"tunnel_too_deep": 1}     # the depth limit, counted by name


def test_mixed_plain_and_tunnelled_rows_keep_capture_order(tmp_path, monkeypatch):
    plain = ether(ip4(tcp_seg(seq=1)))
    tun = ether(ip4(udp(vxlan(ether(ip4(tcp_seg(seq=2)))), 1234, 4789), proto=17, src="192.0.2.1", dst="192.0.2.2"))
    frames = [plain, tun, plain, tun, tun, plain]
    c, rows = both_paths(tmp_path, monkeypatch, frames)
    assert [r["seq"] for r in rows] == [1, 2, 1, 2, 2, 1]
    assert [r["tunnel"] for r in rows] == [0, 1, 0, 1, 1, 0]
    assert c.info.tunnels == ["", "vxlan 192.0.2.1:1234->192.0.2.2:4789 vni 1"]


O = dict(proto=47, src="192.0.2.1", dst="192.0.2.2")
EDGE = {
    # name: (frame, snaplen, skipped)
    "gre_truncated": (ether(ip4(gre(ip4(tcp_seg()), flags=0x2000)[:6], **O)), 65535, "tunnel_error"),
    "gre_v1_pptp": (ether(ip4(gre(b"\xff\x03\x00\x21" + ip4(tcp_seg()), ptype=0x880B, flags=0x3001), **O)),
                    65535, "tunnel_error"),
    "gre_routing": (ether(ip4(gre(ip4(tcp_seg()), flags=0x4000), **O)), 65535, "tunnel_error"),
    "gre_unknown_payload": (ether(ip4(gre(b"\0" * 40, ptype=0x1234), **O)), 65535, "non_ip"),
    "gre_snaplen_cut_inner": (ether(ip4(gre(ip4(tcp_seg())), **O)), 14 + 20 + 4 + 10, "truncated_ip_header"),
    "gre_inner_tcp_cut": (ether(ip4(gre(ip4(tcp_seg())), **O)), 14 + 20 + 4 + 20 + 10, "truncated_tcp_header"),
    "outer_fragment_first": (ether(ip4(gre(ip4(tcp_seg())), proto=47, frag=0x2000)), 65535, "ip_fragment"),
    "outer_fragment_later": (ether(ip4(gre(ip4(tcp_seg())), proto=47, frag=0x0010)), 65535, "ip_fragment"),
    "vxlan_too_short": (ether(ip4(udp(b"abc", 1234, 4789), proto=17)), 65535, "udp"),
    "vxlan_inner_arp": (ether(ip4(udp(vxlan(ether(b"\0" * 28, 0x0806)), 1234, 4789), proto=17)), 65535, "arp"),
    "vxlan_inner_eth_cut": (ether(ip4(udp(vxlan(b"\0" * 8), 1234, 4789), proto=17)), 65535, "truncated_link_header"),
    "geneve_version_1": (ether(ip4(udp(struct.pack("!BBHI", 0x40, 0, 0x0800, 0) + ip4(tcp_seg()), 1, 6081),
                                   proto=17)), 65535, "udp"),
    "geneve_options_cut": (ether(ip4(udp(struct.pack("!BBHI", 0x3F, 0, 0x0800, 0), 1, 6081), proto=17)), 65535,
                           "tunnel_error"),
    "gtpu_not_ip": (ether(ip4(udp(struct.pack("!BBHI", 0x30, 0xFF, 4, 1) + b"\x00" * 4, 2152, 2152), proto=17)),
                    65535, "non_ip"),
    "gtpu_bad_extension": (ether(ip4(udp(struct.pack("!BBHIHBB", 0x34, 0xFF, 8, 1, 0, 0, 0x85) + b"\x00",
                                         2152, 2152), proto=17)), 65535, "tunnel_error"),
    "teredo_not_ipv6": (ether(ip4(udp(ip4(tcp_seg()), 5000, 3544), proto=17)), 65535, "udp"),
    "mpls_no_bottom": (ether(struct.pack("!II", 100 << 12, 200 << 12), 0x8847), 65535, "tunnel_error"),
    "mpls_unknown_payload": (ether(struct.pack("!I", 100 << 12 | 0x100) + b"\x90" * 40, 0x8847), 65535, "non_ip"),
    "pppoe_bad_version": (ether(struct.pack("!BBHHH", 0x12, 0, 1, 22, 0x21) + ip4(tcp_seg()), 0x8864), 65535,
                          "tunnel_error"),
    "ipip_inner_malformed": (ether(ip4(b"\x45" + b"\0" * 3, proto=4)), 65535, "truncated_ip_header"),
    "6in6_inner_udp": (ether(ip6(ip6(udp(b"x", 1, 2), nh=17), nh=41), 0x86DD), 65535, "udp"),
}


@pytest.mark.parametrize("name", sorted(EDGE))
def test_edge_cases(name, tmp_path, monkeypatch):
    frame, snaplen, reason = EDGE[name]
    c, rows = both_paths(tmp_path, monkeypatch, [frame], snaplen)
    assert rows == [] and dict(c.info.skipped) == {reason: 1}


def test_ipv6_outer_with_extension_header_and_6in6(tmp_path, monkeypatch):
    hbh = struct.pack("!BB6x", 41, 0)          # hop-by-hop options, next header 41 (IPv6)
    frame = ether(ip6(hbh + ip6(tcp_seg()), nh=0, src="2001:db8:ffff::1", dst="2001:db8:ffff::2"), 0x86DD)
    c, rows = both_paths(tmp_path, monkeypatch, [frame])
    assert len(rows) == 1 and rows[0]["family"] == 6 and rows[0]["ip_len"] == 60
    assert c.info.tunnels == ["", "6in6 2001:db8:ffff::1->2001:db8:ffff::2"]


def test_gtpu_extension_headers_and_teredo_auth(tmp_path, monkeypatch):
    inner = ip4(tcp_seg(payload=b"abcd"))
    # E flag: seq, N-PDU, next extension 0x85 (PDU session container, 1 word), then none
    g = struct.pack("!BBHIHBB", 0x34, 0xFF, 8 + len(inner), 77, 0, 0, 0x85) + b"\x01\x00\x01\x00" + inner
    auth = struct.pack("!BBBB", 0, 1, 2, 1) + b"id" + b"a" + b"\0" * 9
    t = auth + ip6(tcp_seg(payload=b"xy"))
    frames = [ether(ip4(udp(g, 2152, 2152), proto=17)), ether(ip4(udp(t, 3544, 40000), proto=17))]
    c, rows = both_paths(tmp_path, monkeypatch, frames)
    assert [(r["family"], r["plen"], r["tunnel"]) for r in rows] == [(4, 4, 1), (6, 2, 2)]
    assert c.info.tunnels[1] == "gtpu 10.0.0.1:2152->10.0.0.2:2152 teid 77"
    assert c.info.tunnels[2] == "teredo 10.0.0.1:3544->10.0.0.2:40000"


def test_eompls_control_word_and_erspan3_platform_header(tmp_path, monkeypatch):
    eo = ether(struct.pack("!I", 500 << 12 | 0x100) + b"\0\0\0\0" + ether(ip4(tcp_seg())), 0x8847)
    e3 = struct.pack("!HHIHH", 0x2000, 9, 0, 0, 1) + b"\0" * 8 + ether(ip4(tcp_seg()))
    frames = [eo, ether(ip4(struct.pack("!HHI", 0x1000, 0x22EB, 0) + e3, **O))]
    c, rows = both_paths(tmp_path, monkeypatch, frames)
    assert len(rows) == 2
    assert c.info.tunnels[1:] == ["mpls 02:00:00:00:00:01->02:00:00:00:00:02 labels 500",
                                  "erspan3 192.0.2.1->192.0.2.2 session 9"]


def test_udp_on_tunnel_port_without_tunnel_is_udp_in_vector_path(tmp_path):
    # a UDP datagram from 4789 whose payload is too short, and ordinary DNS: both "udp"
    frames = [ether(ip4(udp(b"ab", 4789, 53), proto=17)), ether(ip4(udp(b"abcdefgh", 53, 53), proto=17))]
    c, rows = decode(tmp_path, frames)
    assert rows == [] and dict(c.info.skipped) == {"udp": 2}


ENCAPS = st.sampled_from(["gre", "gre_key", "teb", "vxlan", "geneve", "gtpu", "ipip", "4in6", "mpls", "pppoe",
                          "erspan2"])


IP_ONLY = ("ipip", "4in6", "gtpu", "mpls", "pppoe")


def wrap(kind, pkt, et):
    """Wrap `pkt` (a payload of ethertype `et`) in one encapsulation -> (new payload, its ethertype)."""
    v6 = et == 0x86DD
    if kind == "gre":
        return ip4(gre(pkt, ptype=et), **O), 0x0800
    if kind == "gre_key":
        return ip4(gre(b"\0\0\0\x05" + pkt, ptype=et, flags=0x2000), **O), 0x0800
    if kind == "teb":
        return ip4(gre(ether(pkt, et), ptype=0x6558), **O), 0x0800
    if kind == "erspan2":
        return ip4(gre(b"\0\0\0\1" + struct.pack("!HHI", 0x1000, 3, 0) + ether(pkt, et), ptype=0x88BE,
                       flags=0x1000), **O), 0x0800
    if kind == "vxlan":
        return ip4(udp(vxlan(ether(pkt, et)), 777, 4789), proto=17), 0x0800
    if kind == "geneve":
        return ip6(udp(struct.pack("!BBHI", 0, 0, et, 5 << 8) + pkt, 999, 6081), nh=17), 0x86DD
    if kind == "gtpu":
        return ip4(udp(struct.pack("!BBHI", 0x30, 0xFF, len(pkt), 3) + pkt, 2152, 2152), proto=17), 0x0800
    if kind == "ipip":
        return ip4(pkt, proto=41 if v6 else 4), 0x0800
    if kind == "4in6":
        return ip6(pkt, nh=41 if v6 else 4), 0x86DD
    if kind == "mpls":
        return struct.pack("!I", 16 << 12 | 0x100 | 64) + pkt, 0x8847
    return struct.pack("!BBHHH", 0x11, 0, 7, len(pkt) + 2, 0x57 if v6 else 0x21) + pkt, 0x8864


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.lists(ENCAPS, min_size=0, max_size=5), st.booleans(), st.integers(0, 40),
                          st.integers(0, 2**32 - 1)), min_size=1, max_size=8),
       st.sampled_from([65535, 60, 90]))
def test_property_encapsulations(tmp_path, monkeypatch, specs, snaplen):
    frames, want = [], []
    for kinds, v6, plen, seq in specs:
        pkt = tcp_seg(seq=seq, payload=b"p" * plen)
        pkt = ip6(pkt) if v6 else ip4(pkt)
        layers, et = 0, 0x86DD if v6 else 0x0800
        for k in kinds:
            if k in IP_ONLY and et not in (0x0800, 0x86DD):
                continue                    # these carry IP only
            pkt, et = wrap(k, pkt, et)
            layers += 1
        frames.append(ether(pkt, et))
        want.append((seq, plen, layers))
    c, rows = both_paths(tmp_path, monkeypatch, frames, snaplen)
    if snaplen == 65535:
        ok = [(s, p) for s, p, n in want if n <= 4]
        assert [(r["seq"], r["plen"]) for r in rows] == ok
        assert c.info.skipped.get("tunnel_too_deep", 0) == sum(n > 4 for _, _, n in want)
        assert all((r["tunnel"] == 0) == (n == 0) for r, (_, _, n) in zip(rows, [w for w in want if w[2] <= 4]))
