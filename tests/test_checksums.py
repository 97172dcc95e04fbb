"""TCP checksum verification: the `csum` column (every decoder), the counters, `--verify-checksums`,
and Zeek's C/c rule (default) vs `zeek -C` (ignore_checksums). Captures: captures/checksums/
(craft_checksums.py) and the kernel captures (veth checksum offload: almost every segment is bad)."""
from __future__ import annotations

import glob
import json
import os
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tcpfsm.capture.reader as reader
import tcpfsm.capture.tshark_engine as te
from tcpfsm import api, cli
from tcpfsm.capture.batch import ALL_COLUMNS
from tcpfsm.capture.dpkt_decoder import open_capture_dpkt
from tcpfsm.capture.reader import open_capture
from tcpfsm.zeek import ZeekTracker

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CK = os.path.join(ROOT, "captures", "checksums")
KERNEL = sorted(glob.glob(os.path.join(ROOT, "captures", "kernel", "*.pcap")))

MIXED = [1, 1, 1, 0, 1, 1, 0, 1, 1, 1] + [0] * 10 + [1]
EXPECTED = {
    "mixed_v4.pcap": MIXED,
    "mixed_v6.pcap": MIXED,
    "snaplen.pcap": [1, 1, 1, 2, 2, 1, 0],
    "offload.pcap": [0, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0],
}
COUNTS = {
    "mixed_v4.pcap": {"good": 9, "bad": 12},
    "mixed_v6.pcap": {"good": 9, "bad": 12},
    "snaplen.pcap": {"good": 4, "bad": 1, "unverifiable": 2},
    "offload.pcap": {"good": 5, "bad": 6},
}


def csum_of(cap, size=65536):
    bs = list(cap.batches(size))
    assert all(b.cols["csum"].dtype == np.uint8 for b in bs)
    return cap, np.concatenate([b.cols["csum"] for b in bs]).tolist()


def openers():
    out = [("fast", open_capture), ("dpkt", open_capture_dpkt)]
    if te.tshark_path() is not None:
        out.append(("tshark", te.open_capture_tshark))
    return out


@pytest.fixture
def scalar(monkeypatch):
    monkeypatch.setattr(reader, "_FORCE_SCALAR", True)


def test_csum_is_a_column():
    assert ALL_COLUMNS["csum"] == np.uint8


def test_generator_is_reproducible(tmp_path):
    import importlib.util
    import shutil
    for f in glob.glob(os.path.join(CK, "*")):
        if os.path.isfile(f):
            shutil.copy(f, tmp_path)
    spec = importlib.util.spec_from_file_location("craft_checksums", tmp_path / "craft_checksums.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main()
    for name in EXPECTED:
        assert (tmp_path / name).read_bytes() == open(os.path.join(CK, name), "rb").read(), name


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("engine", [e for e, _ in openers()])
def test_column_and_counters_every_decoder(name, engine):
    opener = dict(openers())[engine]
    cap, cs = csum_of(opener(os.path.join(CK, name)), 4)
    assert cs == EXPECTED[name]
    assert dict(cap.info.checksums) == COUNTS[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_scalar_path_agrees(name, scalar):
    cap, cs = csum_of(open_capture(os.path.join(CK, name)))
    assert cs == EXPECTED[name]


@pytest.mark.parametrize("path", KERNEL, ids=os.path.basename)
def test_kernel_captures_fast_equals_scalar(path, monkeypatch):
    _, fast = csum_of(open_capture(path))
    monkeypatch.setattr(reader, "_FORCE_SCALAR", True)
    _, slow = csum_of(open_capture(path))
    assert fast == slow


def test_kernel_captures_show_checksum_offload():
    """tcpdump on a veth end: the kernel hands the segments over with CHECKSUM_PARTIAL, so the capture holds
    the pseudo-header sum instead of the checksum - nearly every whole segment is "bad", both directions."""
    total = {"good": 0, "bad": 0, "unverifiable": 0}
    for p in KERNEL:
        cap = open_capture(p)
        for _ in cap.batches():
            pass
        for k, v in cap.info.checksums.items():
            total[k] += v
    assert total == {"good": 414, "bad": 5680, "unverifiable": 2379}


def test_offload_signature_in_kernel_capture():
    """The bad checksums of a kernel capture are exactly the folded pseudo-header sums (offload)."""
    path = os.path.join(ROOT, "captures", "kernel", "normal_close_client.pcap")
    data = open(path, "rb").read()
    pos, recs = 24, []
    while pos < len(data):
        cap = struct.unpack_from("<I", data, pos + 8)[0]
        recs.append(data[pos + 16:pos + 16 + cap])
        pos += 16 + cap
    c = open_capture(path)
    b = next(iter(c.batches()))
    for i in np.flatnonzero(b.cols["csum"] == 0).tolist():
        frame = recs[int(b.cols["index"][i]) - 1]
        ip = frame[14:]
        ihl = (ip[0] & 15) * 4
        field = struct.unpack_from("!H", ip, ihl + 16)[0]
        s = sum(struct.unpack("!4H", ip[12:20])) + 6 + int(b.cols["ip_len"][i]) - ihl
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        assert field == s


# ------------------------------------------------------------------ the kernel's word sums
@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=64, max_size=600), st.lists(st.tuples(st.integers(0, 500), st.integers(1, 120)),
                                                        min_size=1, max_size=12))
def test_word_sums_match_python(buf, segs):
    """The kernel's word sums (eight bytes a load, compiled) against struct's, at any offset and length."""
    for s, n in segs:
        if s >= len(buf):
            continue
        n = min(n, len(buf) - s)
        seg = buf[s:s + n] + (b"\0" if n & 1 else b"")
        # congruent modulo 0xffff (what a checksum reads), and < 2**48 (the caller adds to it)
        got = reader._kernel.word_sum(buf, s, n)
        assert got % 0xFFFF == sum(struct.unpack(f"!{len(seg) // 2}H", seg)) % 0xFFFF and got < 1 << 48


def test_checksum_ffff_where_zero_is_due_is_good(tmp_path):
    """A field of 0xffff where 0x0000 is due passes the receiver's test (Linux, Zeek) and Linux senders write
    it (13 of bench.pcap's segments); Wireshark flags it (RFC 1624), the tshark engine maps it back."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    def frame(payload):
        return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="192.0.2.1", dst="192.0.2.2", id=1)
                     / TCP(sport=1, dport=2, seq=5, flags="PA") / Raw(payload))
    c = struct.unpack_from("!H", frame(b"\0\0"), 50)[0]
    ok = frame(struct.pack("!H", c))                   # this payload word makes the checksum 0x0000
    assert ok[50:52] == b"\0\0"
    alt = ok[:50] + b"\xff\xff" + ok[52:]
    p = tmp_path / "ffff.pcap"
    with open(p, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for r in (ok, alt):
            f.write(struct.pack("<IIII", 1, 0, len(r), len(r)) + r)
    for _, opener in openers():
        assert csum_of(opener(str(p)))[1] == [1, 1]
    other = frame(struct.pack("!H", (c + 1) & 0xFFFF))   # its checksum is 0xfffe: 0xffff is wrong there
    assert other[50:52] == b"\xff\xfe"
    with open(p, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for r in (ok[:50] + b"\xff\xfe" + ok[52:], other[:50] + b"\xff\xff" + other[52:]):
            f.write(struct.pack("<IIII", 1, 0, len(r), len(r)) + r)
    for _, opener in openers():
        assert csum_of(opener(str(p)))[1] == [0, 0]


# ------------------------------------------------------------------ the tracker: default vs --verify-checksums
def states(an):
    return {f.client_port: (f.state("client").value, f.state("server").value) for f in an.flows}


@pytest.mark.parametrize("name", ["mixed_v4.pcap", "mixed_v6.pcap"])
def test_bad_fin_drives_the_state_machine_by_default_only(name):
    path = os.path.join(CK, name)
    d = api.analyze(path)
    assert states(d) == {40000: ("FIN_WAIT_1", "ESTABLISHED"), 40001: ("CLOSED", "CLOSED")}
    s = d.summary()
    assert s["checksums"] == {"bad": 12, "good": 9} and s["dropped_bad_checksum"] == 0
    v = api.analyze(path, verify_checksums=True)
    assert states(v) == {40000: ("ESTABLISHED", "ESTABLISHED"), 40001: ("CLOSED", "CLOSED")}
    s = v.summary()
    assert s["checksums"] == {"bad": 12, "good": 9} and s["dropped_bad_checksum"] == 12
    assert s["tcp_segments"] == 21


def test_unverifiable_segments_are_kept():
    v = api.analyze(os.path.join(CK, "snaplen.pcap"), verify_checksums=True)
    assert v.summary()["dropped_bad_checksum"] == 1            # only the FIN; the cut data stays
    assert states(v) == {40000: ("ESTABLISHED", "ESTABLISHED")}


def test_offload_trap():
    """Captured on the sending host with offload: by default the connection is read correctly; verifying
    checksums throws away everything the client sent."""
    path = os.path.join(CK, "offload.pcap")
    assert states(api.analyze(path)) == {40002: ("TIME_WAIT", "CLOSED")}
    v = api.analyze(path, verify_checksums=True)
    assert v.summary()["dropped_bad_checksum"] == 6
    # Nothing the client sent is left, so the engine sees a capture of the server's direction only: the end
    # states come back, but only as inferences from the server's packets (the observer model's one-sided
    # rules), none from a client segment.
    (flow,) = v.flows
    assert flow.conn.client.packets == 0
    assert all(t.seg is None or t.seg[0] == "server" for t in flow.transitions)
    assert any(t.cause.startswith("inferred:") for t in flow.transitions if t.endpoint == "client")


@pytest.mark.parametrize("engine", ["fast", "dpkt"])
def test_engines_and_batch_sizes_agree_on_dropping(engine):
    path = os.path.join(CK, "mixed_v4.pcap")
    a = api.analyze(path, verify_checksums=True, batch_size=3, engine=engine)
    assert states(a) == states(api.analyze(path, verify_checksums=True))
    assert a.summary()["dropped_bad_checksum"] == 12


# ------------------------------------------------------------------ Zeek
def zeek(name, ignore=False, size=3):
    zt = ZeekTracker(ignore_checksums=ignore)
    for b in open_capture(os.path.join(CK, name)).batches(size):
        zt.feed_batch(b)
    return [(z.orig_p, z.conn_state, z.history, z.orig_pkts, z.resp_pkts) for z in zt.finish()]


@pytest.mark.parametrize("name", ["mixed_v4.pcap", "mixed_v6.pcap"])
def test_zeek_default_discards_bad_segments_with_C(name):
    # conn A: the bad data is C, the retransmission D; the bad FIN is the 2nd bad one (no letter: 1, 10, 100...)
    # conn B: ten bad server segments: c at the 1st and the 10th; none of them counted as packets
    assert zeek(name) == [(40000, "S1", "ShACDa", 3, 2), (40001, "RSTR", "ShAccr", 2, 2)]


@pytest.mark.parametrize("name", ["mixed_v4.pcap", "mixed_v6.pcap"])
def test_zeek_ignore_checksums_is_zeek_minus_C(name):
    assert zeek(name, ignore=True) == [(40000, "S2", "ShADTaF", 5, 2), (40001, "RSTR", "ShAdtr", 2, 12)]


def test_zeek_checks_only_whole_segments():
    assert zeek("snaplen.pcap") == [(40000, "S1", "ShADTaC", 4, 2)]


def test_zeek_on_offload_capture():
    # the bad SYN opens a connection (C only); the SYN-ACK then looks like a reuse and starts another one
    assert zeek("offload.pcap") == [(40002, "OTH", "C", 0, 0), (40002, "SHR", "^hCadf", 0, 5)]
    assert zeek("offload.pcap", ignore=True) == [(40002, "SF", "ShADadFf", 6, 5)]


def test_zeek_without_csum_column_processes_everything():
    zt = ZeekTracker()
    for b in open_capture(os.path.join(CK, "mixed_v4.pcap")).batches():
        b.cols.pop("csum")
        zt.feed_batch(b)
    assert [z.history for z in zt.finish()] == ["ShADTaF", "ShAdtr"]


def test_api_zeek_options_independent_of_verify():
    path = os.path.join(CK, "mixed_v4.pcap")
    for verify in (False, True):
        an = api.analyze(path, zeek=True, verify_checksums=verify)
        assert [z.history for z in an.zeek_conns] == ["ShACDa", "ShAccr"]
        an = api.analyze(path, zeek=True, verify_checksums=verify, zeek_ignore_checksums=True)
        assert [z.history for z in an.zeek_conns] == ["ShADTaF", "ShAdtr"]


# ------------------------------------------------------------------ CLI
def run_cli(capsys, *args):
    cli.main(list(args))                 # exits (SystemExit) only on errors
    return capsys.readouterr()


def test_cli_flags(capsys, tmp_path):
    path = os.path.join(CK, "mixed_v4.pcap")
    out = tmp_path / "a.json"
    run_cli(capsys, "analyze", "-q", "--format", "json", "-o", str(out), path)
    s = json.loads(out.read_text())["summary"]
    assert s["checksums"] == {"bad": 12, "good": 9} and s["dropped_bad_checksum"] == 0
    run_cli(capsys, "analyze", "-q", "--format", "json", "--verify-checksums", "-o", str(out), path)
    assert json.loads(out.read_text())["summary"]["dropped_bad_checksum"] == 12
    run_cli(capsys, "analyze", "-q", "--format", "zeek", "-o", str(out), path)
    assert "ShACDa" in out.read_text()
    run_cli(capsys, "analyze", "-q", "--format", "zeek", "--zeek-ignore-checksums", "-o", str(out), path)
    assert "ShADTaF" in out.read_text()
    for cmd in (["netstat", "--at", "+0.1s"], ["states"], ["timeline"]):
        run_cli(capsys, *cmd, "--verify-checksums", path)
