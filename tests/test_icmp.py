"""ICMP that explains TCP and hop counts (issue 8 parts 2 and 4), on kernel recordings (captures/icmp/,
recorded by captures/icmp/record_icmp.py: client - router - server namespaces, iptables REJECT, TTL 1,
a small-MTU router link) checked against the client kernel's own view (connect() errno and duration,
saved beside each capture), tshark's fields, and the three decoders against each other."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

import tcpfsm
from tcpfsm.api import open_engine
from tcpfsm.capture.icmp import ICMP_COLUMNS, aborts_connect, error_name, linux_errno, parse_error
from tcpfsm.fsm import TABLE, Event, State
from tcpfsm.fsm.table import UNDOES
from tcpfsm.path.flows import hops, path_record

from test_decoders import capture_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ICMP = os.path.join(ROOT, "captures", "icmp")
NAMES = ("reject", "ttl_exceeded", "pmtu")
TSHARK = shutil.which("tshark")


def kernel(name: str) -> dict:
    with open(os.path.join(ICMP, name + ".json")) as f:
        return json.load(f)


_AN: dict = {}


def analysis(name: str):
    if name not in _AN:
        _AN[name] = tcpfsm.analyze(os.path.join(ICMP, name + ".pcap"))
    return _AN[name]


def table(engine: str, path: str) -> dict:
    cap = open_engine(engine, path)
    for _ in cap.batches(64):
        pass
    return cap.icmp.columns()


def flow_of(an, port: int, v6: bool):
    got = [f for f in an.flows if f.client_port == port and (":" in f.client_ip) == v6]
    assert len(got) == 1, (port, v6, [f.client for f in an.flows])
    return got[0]


# ---------------------------------------------------------------------------------------------- decoders
def test_hops_from_the_nearest_initial_ttl():
    assert [hops(t) for t in (64, 63, 56, 128, 120, 255, 250, 32, 30, 1, None)] == \
        [0, 1, 8, 0, 8, 0, 5, 0, 2, 31, None]


@pytest.mark.parametrize("name", NAMES)
def test_engines_agree_on_icmp_errors(name):
    """The fast reader (its own bytes parser), the dpkt decoder (dpkt's headers) and, when installed, tshark
    (its fields) give the same ICMP error table, and every recorded error is in it."""
    path = os.path.join(ICMP, name + ".pcap")
    engines = ["fast", "dpkt"] + (["tshark"] if TSHARK else [])
    tabs = [table(e, path) for e in engines]
    assert len(tabs[0]["index"]) > 0
    for t in tabs[1:]:
        for k in ICMP_COLUMNS:
            assert t[k].tobytes() == tabs[0][k].tobytes(), k


@pytest.mark.parametrize("path", [p.values[0] for p in capture_files() if not p.marks])
def test_fast_and_dpkt_icmp_tables_agree_on_every_capture(path):
    a, b = table("fast", path), table("dpkt", path)
    for k in ICMP_COLUMNS:
        assert a[k].tobytes() == b[k].tobytes(), k


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
@pytest.mark.parametrize("name", NAMES)
def test_icmp_table_equals_tshark_fields(name):
    """tshark's own fields on the same file, read here without the engine: the error frames (ICMP types
    3/11/12, ICMPv6 1-4), their type, code, sender, and the quoted TCP ports."""
    path = os.path.join(ICMP, name + ".pcap")
    out = subprocess.run([TSHARK, "-r", path, "-Y", "icmp.type in {3,11,12} || icmpv6.type in {1,2,3,4}",
                          "-T", "fields", "-E", "separator=/t", "-e", "frame.number", "-e", "icmp.type",
                          "-e", "icmp.code", "-e", "icmpv6.type", "-e", "icmpv6.code", "-e", "ip.src", "-e",
                          "ipv6.src", "-e", "tcp.srcport", "-e", "tcp.dstport"],
                         capture_output=True, text=True, check=True).stdout
    want = []
    for line in out.splitlines():
        num, t4, c4, t6, c6, s4, s6, sp, dp = line.split("\t")
        want.append((int(num), int(t4 or t6), int(c4 or c6), (s4 or s6).split(",")[0], int(sp), int(dp)))
    got = table("fast", path)
    from tcpfsm.track.flowtable import ip_text
    have = [(int(i), int(t), int(c), ip_text(bytes(s)), int(sp), int(dp)) for i, t, c, s, sp, dp in
            zip(got["index"], got["type"], got["code"], got["sender"], got["q_sport"], got["q_dport"])]
    assert have == want and want


def test_parse_error_rejects_what_is_not_an_error_quoting_tcp():
    from scapy.all import ICMP as sICMP, IP, TCP, UDP, raw
    err = raw(IP(src="192.0.2.1", dst="10.0.0.1") / sICMP(type=3, code=3) /
              raw(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1234, dport=80, seq=77))[:28])
    r = parse_error(err, 0, 0x0800)
    assert r is not None and r[3:5] == (3, 3) and r[8:] == (1234, 80, 77)
    echo = raw(IP(src="192.0.2.1", dst="10.0.0.1") / sICMP(type=0))
    udp = raw(IP(src="192.0.2.1", dst="10.0.0.1") / sICMP(type=3, code=3) /
              raw(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=53))[:28])
    short = err[:-1]                                          # 7 quoted TCP bytes: no sequence number
    assert parse_error(echo, 0, 0x0800) is None and parse_error(udp, 0, 0x0800) is None
    assert parse_error(short, 0, 0x0800) is None


# ---------------------------------------------------------------------------------------------- the states
def test_table_rows_for_icmp():
    assert TABLE[State.SYN_SENT][Event.RCV_ICMP_ERROR][0] is State.CLOSED
    assert TABLE[State.CLOSED][Event.SND_SYN_AFTER_ICMP][0] is State.SYN_SENT
    assert (State.CLOSED, Event.SND_SYN_AFTER_ICMP) in UNDOES
    # no other state takes the ICMP event: an established connection keeps retrying on it
    assert [s for s, row in TABLE.items() if Event.RCV_ICMP_ERROR in row] == [State.SYN_SENT]


@pytest.mark.parametrize("name", ["reject", "ttl_exceeded"])
def test_connect_fails_as_the_kernel_said(name):
    """Every connect() the client kernel failed is CLOSED by the ICMP error that answered its SYN, with the
    errno the kernel gave, when the kernel gave it (connect()'s duration; a first error the kernel kept soft
    is undone by the SYN it sent again); every connect() that succeeded reached ESTABLISHED."""
    an = analysis(name)
    k = kernel(name)
    for c in k["connects"]:
        f = flow_of(an, c["local_port"], ":" in c["host"])
        trs = [t for t in f.transitions if t.endpoint == "client"]
        if c["connect"] == "ok":
            assert any(t.new is State.ESTABLISHED for t in trs)
            assert not path_record(f)["icmp"]
            continue
        assert f.state("client") is State.CLOSED
        live = [t for t in trs if not t.retracted]
        end = live[-1]
        assert end.old is State.SYN_SENT and end.new is State.CLOSED and end.cause.startswith("icmp:")
        errs = {e["packet"]: e for e in path_record(f)["icmp"]}
        assert errs[end.packet]["errno"] == c["connect"]
        took = (end.at - f.conn.client.syn_ts[0]) / 1e9
        assert abs(took - c["seconds"]) < 0.1, (took, c)
        retracted = [t for t in trs if t.retracted]
        assert len(retracted) == (2 if c["seconds"] > 0.5 else 0)   # the ignored error and its undoing
        assert not [a for a in f.anomalies if a.kind == "unanswered_syn"]
        assert [a for a in f.anomalies if a.kind == "icmp_unreachable"]


def test_errno_table_is_the_kernels_on_the_recordings():
    """linux_errno on every recorded error that ended a connect equals the errno connect() returned."""
    seen = set()
    for name in ("reject", "ttl_exceeded"):
        an = analysis(name)
        for c in kernel(name)["connects"]:
            if c["connect"] != "ok":
                f = flow_of(an, c["local_port"], ":" in c["host"])
                for e in path_record(f)["icmp"]:
                    assert e["errno"] == c["connect"]
                    seen.add((e["name"], e["errno"]))
    assert len(seen) >= 8


def test_pmtu_errors_are_tied_but_end_nothing():
    an = analysis("pmtu")
    for f in an.flows:
        rec = path_record(f)
        assert rec["icmp"], f.client
        assert {e["name"] for e in rec["icmp"]} == {"fragmentation_needed" if "." in f.client_ip else "packet_too_big"}
        assert {e["mtu"] for e in rec["icmp"]} == {1000 if "." in f.client_ip else 1280}
        assert all(e["errno"] is None for e in rec["icmp"])
        assert any(t.new is State.ESTABLISHED for t in f.transitions)
        assert not any(t.cause.startswith("icmp:") for t in f.transitions)
    kinds = {a.kind for a in an.findings}
    # the retransmissions path MTU discovery caused are neither loss nor an ignoring server
    assert not kinds & {"icmp_unreachable", "lossy_path", "listen_queue_overflow"}
    assert not aborts_connect(4, 3, 4) and not aborts_connect(6, 2, 0)


def test_icmp_unreachable_finding_per_service_with_routers():
    an = analysis("reject")
    k = kernel("reject")
    found = {f.service: f for f in an.findings if f.kind == "icmp_unreachable"}
    failed = {(c["host"], c["port"]) for c in k["connects"] if c["connect"] != "ok"}
    assert {(s.rsplit(":", 1)[0].strip("[]"), int(s.rsplit(":", 1)[1])) for s in found} == failed
    for svc, f in found.items():
        assert f.severity == "high" and "connect(s) failed" in f.message
        port = int(svc.rsplit(":", 1)[1])
        router = k["server6" if "[" in svc else "server"] if port == 6001 else k["router6" if "[" in svc else "router"]
        assert f"from {router} x{f.count}" in f.message
    an2 = analysis("ttl_exceeded")
    assert {f.message.split(" (")[1].split(" x")[0] for f in an2.findings if f.kind == "icmp_unreachable"} == \
        {"ttl_exceeded", "hop_limit_exceeded"}


@pytest.mark.parametrize("name", ["keepalive", "loss_bulk", "slow_handshake", "zero_window"])
def test_icmp_unreachable_quiet_on_clean_recordings(name):
    an = tcpfsm.analyze(os.path.join(ROOT, "captures", "path", name + ".pcap"))
    assert not [f for f in an.findings if f.kind == "icmp_unreachable"]
    assert not getattr(an, "icmp", None) or not len(an.icmp)


# ---------------------------------------------------------------------------------------------- hops
@pytest.mark.parametrize("name", NAMES)
def test_hops_one_router_between(name):
    """Captured on the client's link: the client's packets 0 hops away (TTL 64 as sent, unless it set TTL 1
    itself), the server's 1 (one router decremented them), in each flow's path record and the paths view."""
    an = analysis(name)
    answered = [f for f in an.flows if f.conn.server.packets]
    assert answered
    for f in answered:
        rec = path_record(f)
        assert rec["ttl"] == {"client": 64, "server": 63} and rec["hops"] == {"client": 0, "server": 1}
    from tcpfsm.path.views import path_pairs
    for p in path_pairs(an):
        assert p["hops"] == {"client": 0, "server": 1} or p["hops"]["server"] is None


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
def test_ttl_column_equals_tshark():
    path = os.path.join(ICMP, "reject.pcap")
    out = subprocess.run([TSHARK, "-r", path, "-Y", "tcp and not icmp and not icmpv6", "-T", "fields",
                          "-e", "ip.ttl", "-e", "ipv6.hlim"], capture_output=True, text=True, check=True).stdout
    want = [int(a or b) for a, b in (ln.split("\t") for ln in out.splitlines())]
    cap = open_engine("fast", path)
    got = np.concatenate([b.cols["ttl"] for b in cap.batches(1000)]).tolist()
    assert got == want and len(set(want)) == 2


def test_error_names():
    assert error_name(4, 3, 13) == "admin_prohibited" and error_name(6, 1, 1) == "admin_prohibited"
    assert error_name(4, 11, 0) == "ttl_exceeded" and error_name(6, 3, 0) == "hop_limit_exceeded"
    assert linux_errno(4, 3, 3) == "ECONNREFUSED" and linux_errno(6, 1, 4) == "ECONNREFUSED"
    assert linux_errno(4, 3, 4) is None and linux_errno(6, 2, 0) is None


# ---------------------------------------------------------------------------------------------- timeline
def test_timeline_shows_the_errors_in_time_order():
    """`tcpfsm timeline`: each error the flow got is a line of its own, before the transition it caused,
    and in the JSON as the flow's `icmp` list."""
    from click.testing import CliRunner
    from tcpfsm.cli import cli
    path = os.path.join(ICMP, "reject.pcap")
    an = analysis("reject")
    f = next(f for f in an.flows if f.client_port == next(c["local_port"] for c in kernel("reject")["connects"]
                                                            if c["port"] == 6002 and ":" in c["host"]))
    r = CliRunner().invoke(cli, ["timeline", path, "--flow", str(f.id)], catch_exceptions=False)
    lines = r.stdout.splitlines()
    icmp = [i for i, ln in enumerate(lines) if ln.split()[1:2] == ["icmp"]]
    closes = [i for i, ln in enumerate(lines) if "SYN_SENT → CLOSED" in ln]
    assert len(icmp) == len(closes) == 2 and all(i + 1 == c for i, c in zip(icmp, closes))
    assert "address_unreachable" in lines[icmp[0]] and "EHOSTUNREACH" in lines[icmp[0]]
    r = CliRunner().invoke(cli, ["timeline", path, "--flow", str(f.id), "--format", "json"], catch_exceptions=False)
    (doc,) = json.loads(r.stdout)["flows"]
    assert [e["name"] for e in doc["icmp"]] == ["address_unreachable"] * 2
    assert [e["packet"] for e in doc["icmp"]] == [t["packet"] for t in doc["transitions"] if t["to"] == "CLOSED"]
