"""The dpkt reference decoder (tcpfsm.capture.dpkt_decoder) and the fast decoder (reader.py) must agree:
same rows (all columns, concatenated over batches), same CaptureInfo, same notes - on every capture in
captures/, on damaged / compressed / stdin input, on generated captures, and through the full analysis."""
from __future__ import annotations

import bz2
import glob
import gzip
import io
import lzma
import os
import re
import struct
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tcpfsm.capture.batch as batch_mod
import tcpfsm.capture.reader as reader
from tcpfsm.capture.batch import CaptureError
from tcpfsm.capture.dpkt_decoder import open_capture_dpkt
from tcpfsm.capture.reader import open_capture
from tcpfsm.fsm import get_profile
from tcpfsm.track.flowtable import FlowTable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAPTURES = os.path.join(ROOT, "captures")
ALL_COLUMNS = getattr(batch_mod, "ALL_COLUMNS", batch_mod.COLUMNS)

_CAPTURE_NAME = re.compile(r"\.(pcap|pcapng|cap)(\.(gz|bz2|xz))?$")


def capture_files():
    out = []
    for d in sorted(glob.glob(os.path.join(CAPTURES, "*", ""))):
        name = os.path.basename(os.path.dirname(d))
        if name.startswith((".", "_")):
            continue
        for f in sorted(glob.glob(os.path.join(d, "*"))):
            if os.path.isfile(f) and _CAPTURE_NAME.search(f):
                out.append(pytest.param(f, id=os.path.relpath(f, CAPTURES)))
    return out


def decode(opener, path, size=65536):
    c = opener(path)
    bs = list(c.batches(size))
    assert all(0 < len(b) <= size for b in bs)
    cols = {}
    for k, dt in ALL_COLUMNS.items():
        for b in bs:
            assert b.cols[k].dtype == dt, k
        cols[k] = np.concatenate([b.cols[k] for b in bs]) if bs else np.zeros(0, dt)
    return c, cols


def assert_same(path, size_fast=65536, size_dpkt=65536):
    a, ca = decode(open_capture, path, size_fast)
    b, cb = decode(open_capture_dpkt, path, size_dpkt)
    for k in ALL_COLUMNS:
        if not np.array_equal(ca[k], cb[k]):
            i = int(np.argmax(ca[k] != cb[k])) if len(ca[k]) == len(cb[k]) else None
            where = "" if i is None else f" first at row {i} (record {ca['index'][i]}): {ca[k][i]!r} vs {cb[k][i]!r}"
            pytest.fail(f"{path}: column {k} differs (fast {len(ca[k])} rows, dpkt {len(cb[k])} rows){where}")
    assert a.info == b.info
    assert a.notes == b.notes
    return a, ca


# ------------------------------------------------------------------ every capture in the repository
def test_there_are_captures():
    assert len([p for p in capture_files() if not p.marks]) >= 50


@pytest.mark.parametrize("path", capture_files())
def test_capture_files_agree(path):
    info = assert_same(path)[0].info
    assert info.records == info.tcp_segments + sum(info.skipped.values())


@pytest.mark.parametrize("name", ["eth.pcap", "two_if.pcapng", "truncated.pcapng", "ipv6_ext.pcap"])
def test_batch_size_does_not_matter(name):
    assert_same(os.path.join(CAPTURES, "links", name), 65536, 3)
    assert_same(os.path.join(CAPTURES, "links", name), 1, 65536)


# ------------------------------------------------------------------ full analysis through both decoders
def analyse(opener, path):
    cap = opener(path)
    table = FlowTable(get_profile())
    for b in cap.batches(4096):
        table.feed_batch(b)
    table.finish(cap.info.last_ts)
    return [(f.id, f.client, f.server, f.role_inferred, f.first_ts, f.last_ts, f.first_packet,
             f.state("client"), f.state("server"), list(f.transitions)) for f in table.flows]


@pytest.mark.parametrize("name", ["concurrent_mixed.pcap", "lossy_bulk.pcap", "ipv6_close.pcap", "time_wait_reuse.pcap",
                                  "syn_flood.pcap", "simultaneous_close.pcap"])
def test_analysis_identical(name):
    path = os.path.join(CAPTURES, "kernel", name)
    fast, ref = analyse(open_capture, path), analyse(open_capture_dpkt, path)
    assert fast and sum(len(f[-1]) for f in fast) > 0
    assert fast == ref


# ------------------------------------------------------------------ input plumbing and errors
def _tmp_variants(tmp_path, name):
    data = open(os.path.join(CAPTURES, "links", name), "rb").read()
    gz = gzip.compress(data, mtime=0)
    out = {
        "bz2": bz2.compress(data), "xz": lzma.compress(data), "gz": gz,
        "gz_truncated": gz[:-12], "gz_multi": gzip.compress(data[:300]) + gzip.compress(data[300:]),
        "cut1": data[:-1], "cut15": data[:-15], "cut40": data[:-40], "header_only": data[:24],
    }
    paths = {}
    for k, v in out.items():
        p = tmp_path / f"{k}.bin"
        p.write_bytes(v)
        paths[k] = str(p)
    return paths


@pytest.mark.parametrize("name", ["eth.pcap", "two_if.pcapng", "be.pcapng"])
def test_compressed_and_truncated(tmp_path, name):
    for kind, p in _tmp_variants(tmp_path, name).items():
        assert_same(p)


def test_corrupt_pcap_record_header(tmp_path):
    data = bytearray(open(os.path.join(CAPTURES, "links", "eth.pcap"), "rb").read())
    first = struct.unpack_from("<I", data, 24 + 8)[0]
    struct.pack_into("<I", data, 24 + 16 + first + 8, 0x7FFFFFFF)
    p = tmp_path / "c.pcap"
    p.write_bytes(bytes(data))
    a, _ = assert_same(str(p))
    assert any("corrupt" in w for w in a.info.warnings)


@pytest.mark.parametrize("name", ["eth.pcap", "eth.pcap.gz", "two_if.pcapng"])
def test_stdin(name, monkeypatch):
    data = open(os.path.join(CAPTURES, "links", name), "rb").read()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    a, ca = decode(open_capture, "-")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    b, cb = decode(open_capture_dpkt, "-")
    assert all(np.array_equal(ca[k], cb[k]) for k in ALL_COLUMNS)
    assert a.info == b.info and a.info.records > 0


def _error(opener, path):
    try:
        opener(path)
    except CaptureError as e:
        return str(e)
    return None


@pytest.mark.parametrize("content", [
    b"", b"hello, this is not a capture\n", b"\xd4\xc3\xb2\xa1\x02\x00", gzip.compress(b""),
    gzip.compress(b"text inside gzip"), b"\x28\xb5\x2f\xfd" + b"\0" * 20, b"\x1f\x8b not deflate at all",
    b"\x0a\x0d\x0d\x0a\x1c\0\0\0XXXX" + b"\0" * 16,                        # pcapng with a bad byte-order magic
    struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28) + struct.pack("<II", 1, 13) + b"\0" * 8,
    # ^ corrupt block before any interface
    b"\x34\xcd\xb2\xa1" + b"\0" * 40,                                       # modified-pcap magic (dpkt knows it)
])
def test_open_errors_agree(tmp_path, content):
    p = tmp_path / "x.bin"
    p.write_bytes(content)
    e1, e2 = _error(open_capture, str(p)), _error(open_capture_dpkt, str(p))
    assert e1 is not None and e1 == e2


def test_missing_and_directory(tmp_path):
    for p in (str(tmp_path / "nope.pcap"), str(tmp_path)):
        e = _error(open_capture, p)
        assert e and e == _error(open_capture_dpkt, p)


def test_read_twice():
    c = open_capture_dpkt(os.path.join(CAPTURES, "links", "eth.pcap"))
    list(c.batches())
    with pytest.raises(CaptureError):
        list(c.batches())


# ------------------------------------------------------------------ generated captures
_TUNNEL_PORTS = [4789, 4790, 6081, 2152, 3544]      # VXLAN, VXLAN-GPE, Geneve, GTP-U, Teredo
_PORT = st.one_of(st.integers(0, 65535), st.sampled_from(_TUNNEL_PORTS))
rarely = st.integers(0, 7).map(lambda x: x != 7)   # True ("not damaged") 7 times in 8
_OTHER_PROTO = st.sampled_from([2, 50, 59, 103, 132, 255, 4, 41, 47])     # incl. IP-in-IP, 6in4, GRE

TCP_OPTION = st.one_of(
    st.tuples(st.just(2), st.binary(min_size=2, max_size=2)),          # MSS
    st.tuples(st.just(3), st.binary(min_size=1, max_size=1)),          # window scale
    st.tuples(st.just(4), st.just(b"")),                               # SACK permitted
    st.tuples(st.just(8), st.binary(min_size=8, max_size=8)),          # timestamps
    st.tuples(st.sampled_from([2, 3, 4, 8, 5, 30]), st.binary(max_size=9)),   # odd lengths
    st.just((1, None)),                                                # NOP
    st.just((0, None)),                                                # EOL
    st.tuples(st.sampled_from([2, 8, 99]), st.sampled_from([b"\x00", b"\x01", b"\xff"])),  # raw length byte
)


@st.composite
def tcp_segment(draw):
    opts = b""
    for kind, val in draw(st.lists(TCP_OPTION, max_size=6)):
        if val is None:
            opts += bytes([kind])
        elif kind in (2, 8, 99) and len(val) == 1 and draw(st.booleans()):
            opts += bytes([kind]) + val                                 # bare length byte (0, 1, 255)
        else:
            opts += bytes([kind, len(val) + 2]) + val
    opts = opts[:40]
    opts += b"\0" * (-len(opts) % 4)
    doff = 20 + len(opts)
    off_words = doff // 4 if draw(rarely) else draw(st.integers(0, 15))
    flags = draw(st.integers(0, 0x1FF))
    hdr = struct.pack("!HHIIBBHHH", draw(_PORT), draw(_PORT), draw(st.integers(0, 2**32 - 1)),
                      draw(st.integers(0, 2**32 - 1)), off_words << 4 | flags >> 8, flags & 0xFF,
                      draw(st.integers(0, 65535)), 0, 0)
    return hdr + opts + bytes(draw(st.integers(0, 120)))


@st.composite
def l4(draw, v6):
    kind = "tcp" if draw(rarely) else draw(st.sampled_from(["tcp", "udp", "icmp", "other"]))
    if kind == "tcp":
        return 6, draw(tcp_segment())
    if kind == "udp":
        body = bytes(draw(st.integers(0, 40))) if draw(st.booleans()) else draw(st.binary(max_size=60))
        return 17, struct.pack("!HHHH", draw(_PORT), draw(_PORT), 8 + len(body), 0) + body
    if kind == "icmp":
        return (58 if v6 else 1), bytes([8, 0, 0, 0]) + bytes(draw(st.integers(0, 30)))
    return draw(_OTHER_PROTO), bytes(draw(st.integers(0, 30))) if draw(st.booleans()) else draw(st.binary(max_size=60))


@st.composite
def ipv4(draw):
    proto, body = draw(l4(False))
    nopt = draw(st.integers(0, 3))
    ihl = 5 + nopt
    tot = 4 * ihl + len(body)
    tot = tot if draw(rarely) else draw(st.one_of(st.just(0), st.integers(0, 2000)))   # 0: TSO
    hl_field = ihl if draw(rarely) else draw(st.integers(0, 15))
    version = 4 if draw(rarely) else 6
    frag = 0x4000 if draw(rarely) else draw(st.sampled_from([0, 0x2000, 0x2001, 0x0010]))  # MF first, later
    hdr = struct.pack("!BBHHHBBH4s4s", version << 4 | hl_field, 0, tot, 1, frag, 64, proto, 0,
                      draw(st.binary(min_size=4, max_size=4)), draw(st.binary(min_size=4, max_size=4)))
    return 0x0800, hdr + b"\x01" * (4 * nopt) + body


@st.composite
def ipv6(draw):
    nxt_final, body = draw(l4(True))
    exts = [] if draw(st.booleans()) else draw(st.lists(st.sampled_from([0, 60, 43, 44, 51, 135, 50]), max_size=3))
    chain = b""
    nxts = exts + [nxt_final]
    for i, e in enumerate(exts):
        nx = nxts[i + 1]
        if e == 44:
            fo = draw(st.sampled_from([0, 1, 8, 9]))                      # offset 0/1 x M flag
            chain += struct.pack("!BBHI", nx, 0, fo, 7)
        elif e == 51:
            ln = draw(st.integers(1, 3))
            chain += bytes([nx, ln]) + bytes((ln + 2) * 4 - 2)
        elif e == 50:
            chain += struct.pack("!II", 1, 1)
        else:
            ln = draw(st.integers(0, 2))
            chain += bytes([nx, ln]) + bytes((ln + 1) * 8 - 2)
    first = nxts[0]
    payload = chain + body
    plen = len(payload) if draw(rarely) else draw(st.one_of(st.just(0), st.integers(0, 400)))
    version = 6 if draw(rarely) else 4
    hdr = struct.pack("!IHBB16s16s", version << 28, plen, first, 64, draw(st.binary(min_size=16, max_size=16)),
                      draw(st.binary(min_size=16, max_size=16)))
    return 0x86DD, hdr + payload


@st.composite
def l3(draw, allow_other):
    k = draw(st.sampled_from(["4", "6"]))
    if allow_other and not draw(rarely):
        k = draw(st.sampled_from(["arp", "other", "8023"]))
    if k == "4":
        return draw(ipv4())
    if k == "6":
        return draw(ipv6())
    if k == "arp":
        return draw(st.sampled_from([0x0806, 0x8035])), bytes(28)
    if k == "other":
        return draw(st.sampled_from([0x88CC, 0x0842, 0x9200, 0x05DC])), bytes(20)
    return draw(st.integers(0, 1500)), b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + bytes(20)


LINKS = ["eth", "vlan", "qinq", "vlan3", "sll", "sll2", "raw", "ipv4", "ipv6", "null_le", "null_be", "loop",
         "loop_le", "unsupported"]


def link_frame(link, et, pkt, draw):
    if link in ("eth", "vlan", "qinq", "vlan3"):
        tags = {"eth": [], "vlan": [0x8100], "qinq": [0x88A8, 0x8100], "vlan3": [0x9100, 0x88A8, 0x8100]}[link]
        b = b"\x02" * 6 + b"\x04" * 6
        for t in tags:
            b += struct.pack("!HH", t, draw(st.integers(0, 0xFFFF)))
        return 1, b + struct.pack("!H", et) + pkt
    if link == "sll":
        return 113, struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 8, et) + pkt
    if link == "sll2":
        return 276, struct.pack("!HHIHBB8s", et, 0, 2, 1, 0, 6, b"\x02" * 8) + pkt
    if link in ("raw", "ipv4", "ipv6"):
        return {"raw": 101, "ipv4": 228, "ipv6": 229}[link], pkt
    fam = 2 if et == 0x0800 else draw(st.sampled_from([24, 28, 30])) if et == 0x86DD else 7
    if link.startswith("null"):
        return 0, struct.pack("<I" if link == "null_le" else ">I", fam) + pkt
    if link.startswith("loop"):
        return 108, struct.pack("<I" if link == "loop_le" else ">I", fam) + pkt
    return 147, pkt


@st.composite
def capture(draw):
    link = draw(st.sampled_from(LINKS))
    ng = draw(st.booleans())
    frames = []
    for _ in range(draw(st.integers(1, 10))):
        et, pkt = draw(l3(link not in ("raw", "ipv4", "ipv6")))
        lt, frame = link_frame(link, et, pkt, draw)
        snap = 65535 if draw(rarely) else draw(st.integers(0, 120))
        frames.append((lt, draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 999_999)), frame, snap))
    if not ng:
        order = draw(st.sampled_from(["<", ">"]))
        nano = draw(st.booleans())
        out = [struct.pack(order + "IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0, 65535, frames[0][0])]
        for _lt, sec, frac, f, snap in frames:
            c = f[:snap]
            out.append(struct.pack(order + "IIII", sec, frac, len(c), len(f)) + c)
    else:
        o = draw(st.sampled_from(["<", ">"]))

        def blk(t, body):
            body += b"\0" * (-len(body) % 4)
            return struct.pack(o + "II", t, 12 + len(body)) + body + struct.pack(o + "I", 12 + len(body))

        out = [blk(0x0A0D0D0A, struct.pack(o + "IHHq", 0x1A2B3C4D, 1, 0, -1))]
        nif = draw(st.integers(1, 2))
        for _ in range(nif):
            opts = b""
            res = draw(st.one_of(st.none(), st.sampled_from([0, 3, 6, 9, 12, 0x80 | 10, 0x80 | 24])))
            if res is not None:
                opts += struct.pack(o + "HH", 9, 1) + bytes([res]) + b"\0\0\0"
            if draw(st.booleans()):
                opts += struct.pack(o + "HHq", 14, 8, draw(st.integers(-100, 100)))
            if opts:
                opts += struct.pack(o + "HH", 0, 0)
            out.append(blk(1, struct.pack(o + "HHI", frames[0][0], 0, draw(st.sampled_from([0, 60, 65535]))) + opts))
        for _lt, sec, frac, f, snap in frames:
            c = f[:snap]
            kind = draw(st.sampled_from(["epb", "epb", "epb", "spb", "pb"]))
            ifid = draw(st.integers(0, nif - 1)) if draw(rarely) else nif   # nif: an interface with no IDB
            ticks = sec * 1_000_000 + frac
            if kind == "epb":
                out.append(blk(6, struct.pack(o + "IIIII", ifid, ticks >> 32, ticks & 0xFFFFFFFF, len(c), len(f)) + c))
            elif kind == "pb":
                ids = struct.pack(o + "HH", ifid, 0)
                out.append(blk(2, ids + struct.pack(o + "IIII", ticks >> 32, ticks & 0xFFFFFFFF, len(c), len(f)) + c))
            else:
                out.append(blk(3, struct.pack(o + "I", len(f)) + c))
    data = b"".join(out)
    cut = draw(st.one_of(st.just(0), st.just(0), st.integers(0, 40)))
    return data[:len(data) - cut] if cut else data


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(capture(), st.integers(1, 6))
def test_property_generated_captures_agree(tmp_path, data, size):
    p = tmp_path / "gen.bin"
    p.write_bytes(data)
    e1, e2 = _error(open_capture, str(p)), _error(open_capture_dpkt, str(p))
    assert e1 == e2
    if e1 is not None:
        return
    assert_same(str(p), size, 7 - size)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(capture(), st.sampled_from(["gzip", "bz2", "xz"]), st.integers(0, 30))
def test_property_compressed_generated_captures_agree(tmp_path, data, comp, cut):
    packed = {"gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}[comp](data)
    p = tmp_path / "gen.bin"
    p.write_bytes(packed[:len(packed) - cut] if cut else packed)
    e1, e2 = _error(open_capture, str(p)), _error(open_capture_dpkt, str(p))
    assert e1 == e2
    if e1 is None:
        assert_same(str(p))


# ------------------------------------------------------------------ encapsulations: decapsulated by both decoders
# (the dpkt reference reads every encapsulation independently of reader.py; these hold the two equal on what
# the capture files do not show: damaged headers, every edge case of tests/test_tunnels.py, random nestings)
import test_tunnels as tt  # noqa: E402
from tcpfsm.capture.dpkt_decoder import decode_record  # noqa: E402


def _pcap_frames(path):
    data = open(path, "rb").read()
    lt = struct.unpack_from("<I", data, 20)[0] & 0xFFFF
    out, pos = [], 24
    while pos + 16 <= len(data):
        cap, orig = struct.unpack_from("<II", data, pos + 8)
        out.append((lt, data[pos + 16:pos + 16 + cap], orig))
        pos += 16 + cap
    return out


_ENCAP_FRAMES = [r for d in ("tunnels", "encaps") for f in sorted(glob.glob(os.path.join(CAPTURES, d, "*.pcap")))
                 for r in _pcap_frames(f)]


def _record_agrees(lt, data, orig):
    """reader's scalar parser and the dpkt reference reach the same row (tunnel text included) or skip reason
    for one record (a fragment: 'ip_fragment' in both, without a store); neither raises."""
    a = reader._parse_one(data, lt, orig)
    if type(a) is reader._Frag:
        a = "ip_fragment"
    b = decode_record(data, lt, orig)
    assert a == b, (lt, data.hex(), a, b)
    return a


def test_encapsulation_captures_have_frames():
    assert len(_ENCAP_FRAMES) >= 200 and {lt for lt, _, _ in _ENCAP_FRAMES} == {1}


def test_damaged_encapsulation_frames_agree():
    """Every frame of captures/tunnels and captures/encaps cut at every length, and with each byte up to the end
    of the innermost TCP header set to 0x00, 0xff and +1 in turn: both decoders give the same row or the same
    skip reason (truncated inner headers are counted under reader.py's reasons, nothing escapes)."""
    reasons, rows = set(), 0
    for k, (lt, data, orig) in enumerate(_ENCAP_FRAMES):
        for cut in range(len(data)):
            r = _record_agrees(lt, data[:cut], orig)
            reasons.add(r) if type(r) is str else None
        if k % 2:
            continue
        for pos in range(min(len(data), 160)):
            for val in (0, 0xFF, (data[pos] + 1) & 0xFF):
                d = bytearray(data)
                d[pos] = val
                r = _record_agrees(lt, bytes(d), orig)
                if type(r) is str:
                    reasons.add(r)
                else:
                    rows += 1
    assert rows > 1000
    assert reasons >= {"tunnel_error", "truncated_link_header", "truncated_ip_header", "truncated_tcp_header",
                       "malformed_ip", "malformed_tcp", "non_ip", "udp", "encrypted", "tunnel_too_deep"}


def _write(tmp_path, frames, snaplen=65535):
    p = tmp_path / "t.pcap"
    p.write_bytes(tt.pcap(frames, snaplen=snaplen))
    return str(p)


@pytest.mark.parametrize("name", sorted(tt.EDGE))
def test_tunnel_edge_cases_agree(tmp_path, name):
    frame, snaplen, reason = tt.EDGE[name]
    a, _ = assert_same(_write(tmp_path, [frame], snaplen))
    assert dict(a.info.skipped) == {reason: 1}


def test_depth_limit_and_fragments_inside_tunnels_agree(tmp_path):
    """The depth limit (4 nested GREs decoded, 5 counted as tunnel_too_deep), and a TCP datagram fragmented inside
    a tunnel: reassembled per tunnel (the same IP id in another tunnel is another datagram), the row carrying
    the tunnel of its fragments."""
    inner = tt.ip4(tt.tcp_seg())
    seg = tt.tcp_seg(payload=b"z" * 40)
    pieces = [tt.ip4(seg[:24], frag=0x2000), tt.ip4(seg[24:], frag=0x0003)]
    via = lambda pkt, vni: tt.ether(tt.ip4(tt.udp(tt.vxlan(tt.ether(pkt), vni), 1234, 4789), proto=17))  # noqa: E731
    frames = [tt.ether(tt.nest_gre(inner, 4)), tt.ether(tt.nest_gre(inner, 5)),
              via(pieces[0], 1), via(pieces[0], 2), via(pieces[1], 2), via(pieces[1], 1)]
    a, cols = assert_same(_write(tmp_path, frames))
    assert a.info.skipped == {"tunnel_too_deep": 1, "ip_fragment": 2}
    assert cols["index"].tolist() == [1, 5, 6] and cols["plen"].tolist() == [0, 40, 40]
    assert [a.info.tunnels[t] for t in cols["tunnel"].tolist()] == [
        " / ".join(["gre 192.0.2.1->192.0.2.2"] * 4), "vxlan 10.0.0.1:1234->10.0.0.2:4789 vni 2",
        "vxlan 10.0.0.1:1234->10.0.0.2:4789 vni 1"]
    assert a.notes["ip_datagrams_reassembled"] == 2


# Encapsulations of issue 10 that tests/test_tunnels.py's `wrap` does not build, from the specs
def _wrap_more(kind, pkt, et):
    ip_next = {0x0800: 1, 0x86DD: 2}
    if kind == "vntag":
        return struct.pack("!HHH", 0x8001, 0x0002, et) + pkt, 0x8926
    if kind == "etag":
        return struct.pack("!HHBBH", 0x0001, 0x1002, 0, 0, et) + pkt, 0x893F
    if kind == "macsec":                                 # TCI.SC (+ SCI) or TCI 0; unencrypted
        return struct.pack("!BBI", 0x20, 0, 7) + b"\x02" * 6 + b"\0\1" + struct.pack("!H", et) + pkt, 0x88E5
    if kind == "pbb":
        return struct.pack("!I", 0x00ABCDEF) + tt.ether(pkt, et), 0x88E7
    if kind == "fabricpath":
        return struct.pack("!H", (5 << 6) | 32) + tt.ether(pkt, et), 0x8903
    if kind == "nsh":
        nxt = ip_next.get(et, 3)
        body = pkt if nxt != 3 else tt.ether(pkt, et)
        return struct.pack("!BBBBI", 0, 2, 1, nxt, (42 << 8) | 255) + body, 0x894F
    if kind == "vxlan_gpe":
        nxt = ip_next.get(et, 3)
        body = pkt if nxt != 3 else tt.ether(pkt, et)
        return tt.ip4(tt.udp(struct.pack("!BHBI", 0x0C, 0, nxt, 99 << 8) + body, 5555, 4790), proto=17), 0x0800
    if kind == "erspan3":
        hdr = struct.pack("!HHIHH", 0x2000, 6, 0, 0, 0)
        return tt.ip4(tt.gre(b"\0\0\0\1" + hdr + tt.ether(pkt, et), ptype=0x22EB, flags=0x1000), **tt.O), 0x0800
    if kind == "teredo_anyport" and et == 0x86DD:
        return tt.ip4(tt.udp(pkt, 50123, 3545), proto=17, src="198.51.100.7", dst="203.0.113.9"), 0x0800
    return tt.wrap(kind, pkt, et)


_MORE = ["vntag", "etag", "macsec", "pbb", "fabricpath", "nsh", "vxlan_gpe", "erspan3", "teredo_anyport"]
_ETH_ONLY = ("vntag", "etag", "macsec", "pbb", "fabricpath")    # carried in Ethernet: the outermost only


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.lists(st.sampled_from(list(tt.ENCAPS.elements) + _MORE), max_size=6), st.booleans(),
                          st.integers(0, 40), st.integers(0, 2**32 - 1), st.integers(0, 400), st.integers(0, 255)),
                min_size=1, max_size=8),
       st.sampled_from([65535, 60, 90, 130]))
def test_property_nested_encapsulations_agree(tmp_path, specs, snaplen):
    """Random nestings of every encapsulation, sometimes with one byte changed: the same rows (tunnel column and
    table included) and skips from both decoders."""
    frames = []
    for kinds, v6, plen, seq, dpos, dval in specs:
        pkt = tt.tcp_seg(seq=seq, payload=b"p" * plen)
        pkt, et = (tt.ip6(pkt), 0x86DD) if v6 else (tt.ip4(pkt), 0x0800)
        for i, k in enumerate(kinds):
            if k in tt.IP_ONLY and et not in (0x0800, 0x86DD) or k in _ETH_ONLY and i != len(kinds) - 1:
                continue
            pkt, et = _wrap_more(k, pkt, et)
        f = bytearray(tt.ether(pkt, et))
        if dpos < len(f) and dval & 1:
            f[dpos] = dval
        frames.append(bytes(f))
    assert_same(_write(tmp_path, frames, snaplen))


def _lbl(*labels):
    return b"".join(struct.pack("!I", v << 12 | (0x100 if i == len(labels) - 1 else 0) | 64)
                    for i, v in enumerate(labels))


_T4 = tt.ip4(tt.tcp_seg())
_T6 = tt.ip6(tt.tcp_seg())
_NSH = lambda ln, nxt, ver=0: struct.pack("!BBBBI", ver << 6, ln, 1, nxt, (42 << 8) | 255)  # noqa: E731
_E3 = lambda w: struct.pack("!HHIHH", 0x2000, 6, 0, 0, w)  # noqa: E731
_GRE_S = dict(ptype=0x22EB, flags=0x1000)
# name: (frame, the skip reason, or None when the TCP segment is decoded)
EDGE_MORE = {
    "mpls_16_labels": (tt.ether(_lbl(*range(16, 32)) + _T4, 0x8847), None),
    "mpls_17_labels": (tt.ether(_lbl(*range(16, 33)) + _T4, 0x8847), "tunnel_error"),
    "mpls_nothing_after_stack": (tt.ether(_lbl(16), 0x8847), "truncated_ip_header"),
    "nsh_ipv4": (tt.ether(_NSH(2, 1) + _T4, 0x894F), None),
    "nsh_with_context_header": (tt.ether(_NSH(3, 2) + b"ctx!" + _T6, 0x894F), None),
    "nsh_length_1": (tt.ether(_NSH(1, 1) + _T4, 0x894F), "tunnel_error"),
    "nsh_version_1": (tt.ether(_NSH(2, 1, 1) + _T4, 0x894F), "tunnel_error"),
    "nsh_next_unknown": (tt.ether(_NSH(2, 0x99) + _T4, 0x894F), "non_ip"),
    "nsh_longer_than_frame": (tt.ether(_NSH(40, 1) + _T4, 0x894F), "tunnel_error"),
    "macsec_encrypted": (tt.ether(struct.pack("!BBI", 0x0C, 0, 1) + _T4, 0x88E5), "encrypted"),
    "macsec_changed_only": (tt.ether(struct.pack("!BBI", 0x04, 0, 1) + _T4, 0x88E5), "encrypted"),
    "macsec_no_sci": (tt.ether(struct.pack("!BBIH", 0x00, 0, 1, 0x0800) + _T4, 0x88E5), None),
    "macsec_sci_cut": (tt.ether(struct.pack("!BBI", 0x20, 0, 1) + b"\x02" * 8, 0x88E5), "truncated_link_header"),
    "vntag_cut": (tt.ether(b"\x80\x01\x00", 0x8926), "truncated_link_header"),
    "etag_cut": (tt.ether(b"\x00\x01\x10\x02\x00\x00\x08", 0x893F), "truncated_link_header"),
    "pbb_cut": (tt.ether(b"\x00\xab", 0x88E7), "tunnel_error"),
    "pbb_inner_cut": (tt.ether(b"\x00\xab\xcd\xef" + b"\x02" * 10, 0x88E7), "truncated_link_header"),
    "fabricpath_cut": (tt.ether(b"\x01", 0x8903), "tunnel_error"),
    "erspan2_bad_version": (tt.ether(tt.ip4(tt.gre(b"\0\0\0\1" + struct.pack("!HHI", 0x2000, 3, 0) + tt.ether(_T4),
                                                   ptype=0x88BE, flags=0x1000), **tt.O)), "tunnel_error"),
    "erspan1": (tt.ether(tt.ip4(tt.gre(tt.ether(_T4), ptype=0x88BE), **tt.O)), None),
    "erspan3_platform_header": (tt.ether(tt.ip4(tt.gre(b"\0\0\0\1" + _E3(1) + b"\0" * 8 + tt.ether(_T4), **_GRE_S),
                                                **tt.O)), None),
    "erspan3_not_ethernet": (tt.ether(tt.ip4(tt.gre(b"\0\0\0\1" + _E3(2 << 10) + _T4, **_GRE_S), **tt.O)), "non_ip"),
    "erspan3_cut": (tt.ether(tt.ip4(tt.gre(b"\0\0\0\1" + _E3(0)[:10], **_GRE_S), **tt.O)), "tunnel_error"),
    "gre_checksum_key_seq": (tt.ether(tt.ip4(tt.gre(b"\0" * 4 + b"\0\0\0\x09" + b"\0\0\0\1" + _T4, flags=0xB000),
                                             **tt.O)), None),
    "gre_ack_bit_in_version_0": (tt.ether(tt.ip4(tt.gre(_T4, flags=0x0080), **tt.O)), None),
    "vxlan_gpe_version_1": (tt.ether(tt.ip4(tt.udp(struct.pack("!BHBI", 0x1C, 0, 1, 0) + _T4, 1, 4790), proto=17)),
                            "udp"),
    "vxlan_gpe_next_unknown": (tt.ether(tt.ip4(tt.udp(struct.pack("!BHBI", 0x0C, 0, 9, 0) + _T4, 1, 4790),
                                               proto=17)), "non_ip"),
    "vxlan_gpe_nsh_ethernet": (tt.ether(tt.ip4(tt.udp(struct.pack("!BHBI", 0x0C, 0, 4, 0) + _NSH(2, 3)
                                                      + tt.ether(_T4), 1, 4790), proto=17)), None),
    "geneve_ipv4_payload": (tt.ether(tt.ip4(tt.udp(struct.pack("!BBHI", 0, 0, 0x0800, 5 << 8) + _T4, 1, 6081),
                                            proto=17)), None),
    "teredo_any_port_length_mismatch": (tt.ether(tt.ip4(tt.udp(_T6 + b"x", 5000, 6000), proto=17)), "udp"),
    "teredo_any_port_auth_and_origin": (tt.ether(tt.ip4(tt.udp(struct.pack("!BBBB", 0, 1, 1, 1) + b"ia" + b"\0" * 9
                                                               + b"\0\0\x12\x34" + b"\xff" * 4 + _T6, 5000, 6000),
                                                        proto=17)), None),
    "teredo_auth_cut": (tt.ether(tt.ip4(tt.udp(struct.pack("!BBBB", 0, 1, 200, 0) + _T6, 3544, 6000), proto=17)),
                        "udp"),
    "pppoe_compressed_protocol": (tt.ether(struct.pack("!BBHHB", 0x11, 0, 7, len(_T6) + 1, 0x57) + _T6, 0x8864),
                                  None),
    "pppoe_lcp": (tt.ether(struct.pack("!BBHHH", 0x11, 0, 7, 6, 0xC021) + b"\x01\x01\x00\x04", 0x8864), "non_ip"),
    "snap_then_mpls": (tt.ether(b"\xaa\xaa\x03\0\0\0\x88\x47" + _lbl(5) + _T4, 60), None),
    "vlan_then_vntag_then_ipv4": (tt.ether(struct.pack("!HH", 7, 0x8926) + b"\x80\x01\x00\x02\x08\x00" + _T4, 0x8100),
                                  None),
    "vxlan_gpe_version_2": (tt.ether(tt.ip4(tt.udp(struct.pack("!BHBI", 0x2C, 0, 1, 0) + _T4, 1, 4790), proto=17)),
                            "udp"),
    "mpls_control_word_with_flags": (tt.ether(_lbl(500) + b"\x05\0\0\1" + tt.ether(_T4), 0x8847), None),
    "gtpu_extension_cut": (tt.ether(tt.ip4(tt.udp(struct.pack("!BBHIHBB", 0x34, 0xFF, 8, 1, 0, 0, 0x85) + b"\x02",
                                                  2152, 2152), proto=17)), "tunnel_error"),
}


@pytest.mark.parametrize("name", sorted(EDGE_MORE))
def test_more_encapsulation_edge_cases_agree(tmp_path, name):
    frame, reason = EDGE_MORE[name]
    a, cols = assert_same(_write(tmp_path, [frame]))
    if reason is None:
        assert a.info.tcp_segments == 1 and cols["tunnel"][0] == (0 if "vntag" in name or "macsec" in name else 1)
    else:
        assert a.info.tcp_segments == 0 and dict(a.info.skipped) == {reason: 1}


# ------------------------------------------------------------------ fast-path bugs the reference found (fixed)
def _fh6(nxt, off, more, ident):
    return struct.pack("!BBHI", nxt, 0, (off << 3) | more, ident)


def test_reassembled_datagram_that_is_itself_a_first_fragment(tmp_path):
    """Two fragment headers, the outer one a first fragment: the rebuilt datagram is a fragment again and
    counts as one (the fast path appended it as a row and raised IndexError out of batches())."""
    seg = tt.tcp_seg(payload=b"z" * 40)
    frames = [tt.ether(tt.ip6(_fh6(44, 0, 1, 1) + _fh6(6, 0, 1, 2) + seg[:24], nh=44), 0x86DD),
              tt.ether(tt.ip6(_fh6(44, 0, 1, 1) + _fh6(6, 3, 0, 2) + seg[24:], nh=44), 0x86DD)]
    a, _ = assert_same(_write(tmp_path, frames))
    assert a.info.tcp_segments == 0 and a.info.skipped == {"ip_fragment": 2}


@pytest.mark.parametrize("link", ["snap", "ppp"])
def test_icmp_error_on_scalar_path_link_is_in_the_side_table(tmp_path, link):
    """An ICMP error behind 802.3 LLC/SNAP or on a PPP link (the scalar path's link types) is in the fast
    engine's ICMP side table, as in the dpkt reference's (it only read what the kernel classified)."""
    from tcpfsm.api import open_engine
    quoted = tt.ip4(tt.tcp_seg())[:28]
    err = tt.ip4(bytes([3, 3, 0, 0, 0, 0, 0, 0]) + quoted, proto=1, src="192.0.2.9", dst="10.0.0.1")
    p = tmp_path / "e.pcap"
    if link == "snap":
        snap = b"\xaa\xaa\x03\0\0\0\x08\x00" + err
        p.write_bytes(tt.pcap([tt.ether(snap, len(snap))]))
    else:
        p.write_bytes(tt.pcap([b"\xff\x03\x00\x21" + err], lt=9))
    got = {}
    for e in ("dpkt", "fast"):
        c = open_engine(e, str(p))
        for _ in c.batches():
            pass
        assert dict(c.info.skipped) == {"icmp": 1}
        got[e] = c.icmp.columns()["index"].tolist()
    assert got["dpkt"] == [1]
    assert got["fast"] == got["dpkt"]


def test_tunnel_numbers_past_the_column_range_agree(tmp_path, monkeypatch):
    """More distinct tunnels than the `tunnel` column holds (the bound lowered to 2 in both decoders): later ones
    share the last number, with one warning, the same in both."""
    import tcpfsm.capture.dpkt_decoder as dd
    monkeypatch.setattr(reader, "_MAX_TUNNELS", 2)
    monkeypatch.setattr(dd, "_MAX_TUNNEL_ID", 2)
    frames = [tt.ether(tt.ip4(tt.udp(tt.vxlan(tt.ether(tt.ip4(tt.tcp_seg())), vni), 1234, 4789), proto=17))
              for vni in (1, 2, 3, 4, 1, 3)]
    a, cols = assert_same(_write(tmp_path, frames))
    assert cols["tunnel"].tolist() == [1, 2, 2, 2, 1, 2] and len(a.info.tunnels) == 3
    assert sum("distinct tunnels" in w for w in a.info.warnings) == 1
