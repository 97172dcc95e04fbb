"""Path findings (issue 8 part 6) on the kernel recordings, the host-pair view (part 3) and names from the
capture's DNS answers (part 5). Each finding fires on the recording made for it and stays quiet on the clean
scenarios."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tcpfsm

ROOT = Path(__file__).resolve().parent.parent
PATH = ROOT / "captures" / "path"
KERNEL = ROOT / "captures" / "kernel"
PATH_KINDS = {"lossy_path", "slow_handshake", "zero_window_stall", "keepalive_absent", "listen_queue_overflow"}
CLEAN = [KERNEL / f"{n}.pcap" for n in ("normal_close_client", "normal_close_server", "half_close", "ipv6_close",
                                        "concurrent_mixed", "time_wait_reuse", "close_wait_leak", "rst_abort")] + \
    [PATH / "reorder.pcap"]


def kinds(path, **th):
    an = tcpfsm.analyze(str(path), thresholds=th or None)
    return {a.kind: a for a in an.findings if a.kind in PATH_KINDS}, an


@pytest.mark.parametrize("path", CLEAN, ids=lambda p: p.stem)
def test_quiet_on_clean_scenarios(path):
    found, _ = kinds(path)
    assert not found, {k: a.message for k, a in found.items()}


def test_zero_window_stall_blames_the_receiver_that_stopped_reading():
    found, an = kinds(PATH / "zero_window.pcap")
    assert set(found) == {"zero_window_stall"}
    a = found["zero_window_stall"]
    assert a.host == an.flows[0].server_ip and "stopped reading" in a.message
    flow_kinds = [(x.kind, x.endpoint) for x in an.flows[0].anomalies]
    assert ("zero_window_stall", "server") in flow_kinds
    assert a.packets and a.packets[0] > 0
    found, _ = kinds(PATH / "zero_window.pcap", zero_window_stall=5)      # stalled ~3 s: not over 5 s
    assert "zero_window_stall" not in found


def test_slow_handshake_counts_the_syn_retries():
    found, an = kinds(PATH / "slow_handshake.pcap")
    a = found["slow_handshake"]
    assert "SYN retransmission" in a.message and a.severity == "medium"    # ~3 s: over slow_connect (3 s)
    assert a.flows == [an.flows[0].id]
    assert "slow_handshake" not in kinds(PATH / "slow_handshake.pcap", slow_handshake=10)[0]


def test_listen_queue_overflow_on_a_full_accept_queue():
    found, an = kinds(PATH / "listen_overflow.pcap")
    a = found["listen_queue_overflow"]
    assert a.severity == "high" and a.count == 4 and a.service.endswith(":5005")
    assert "lossy_path" not in found             # the retransmissions are the application's, not the network's


def test_lossy_path_per_host_pair_with_the_rate():
    found, an = kinds(KERNEL / "lossy_bulk.pcap")
    a = found["lossy_path"]
    assert "%" in a.message and a.count > 10
    assert "lossy_path" not in kinds(KERNEL / "lossy_bulk.pcap", lossy_path_rate=0.5)[0]


def test_keepalive_absent_only_where_no_keepalives_ran():
    found, an = kinds(PATH / "keepalive.pcap")
    assert "keepalive_absent" not in found                                 # idle 4.5 s < 60 s default
    found, an = kinds(PATH / "keepalive.pcap", keepalive_idle=2)
    a = found["keepalive_absent"]
    assert a.flows == [an.flows[1].id]                                     # the one without SO_KEEPALIVE


def test_thresholds_are_overridable_by_name_on_the_command_line():
    p = subprocess.run([sys.executable, "-m", "tcpfsm.cli", "analyze", str(PATH / "keepalive.pcap"), "--format",
                        "json", "--threshold", "keepalive_idle=2"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "keepalive_absent" in {a["kind"] for a in json.loads(p.stdout)["anomalies"]}


# -- paths: mtr --report ---------------------------------------------------------------------------
def run(*args):
    return subprocess.run([sys.executable, "-m", "tcpfsm.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_paths_loss_is_tsharks_retransmitted_data_segments():
    path = KERNEL / "lossy_bulk.pcap"
    doc = json.loads(run("paths", str(path), "--format", "json", "-n").stdout)
    (p,) = doc["paths"]
    out = subprocess.run(["tshark", "-r", str(path), "-Y", "tcp.len > 0", "-T", "fields", "-e",
                          "tcp.analysis.retransmission"], capture_output=True, text=True).stdout.splitlines()
    assert p["sent"] == len(out)
    assert p["retransmitted"] == sum(1 for x in out if x)
    assert p["loss_pct"] == round(100 * p["retransmitted"] / p["sent"], 2)
    assert p["rtt_ms"]["best"] <= p["rtt_ms"]["avg"] <= p["rtt_ms"]["worst"] and p["rtt_ms"]["samples"] > 10
    text = run("paths", str(path), "-n").stdout.splitlines()
    assert text[0].split() == ["Client", "Server", "Conns", "Hops", "Loss%", "Snt", "Last", "Avg", "Best", "Wrst", "StDev",
                               "HsAvg"]
    assert f"{p['loss_pct']:.1f}%" in text[1]


def test_paths_one_row_per_host_pair():
    doc = json.loads(run("paths", str(ROOT / "captures" / "kernel" / "syn_flood.pcap"), "--format", "json").stdout)
    pairs = {(p["client"], p["server"]) for p in doc["paths"]}
    assert len(pairs) == len(doc["paths"]) > 100


# -- names from the capture's DNS answers ------------------------------------------------------------
@pytest.fixture
def dns_capture(tmp_path):
    """A DNS answer (CNAME chain to an A record), a PTR answer, then TCP to both addresses."""
    from scapy.all import DNS, DNSQR, DNSRR, IP, TCP, UDP, Ether, wrpcap
    c = "10.5.0.1"
    pk = [Ether() / IP(src="10.5.0.53", dst=c) / UDP(sport=53, dport=33333) /
          DNS(id=1, qr=1, qd=DNSQR(qname="www.example.com"),
              an=[DNSRR(rrname="www.example.com", type="CNAME", rdata="web.example.net"),
                  DNSRR(rrname="web.example.net", type="A", rdata="10.5.0.2")]),
          Ether() / IP(src="10.5.0.53", dst=c) / UDP(sport=53, dport=33334) /
          DNS(id=2, qr=1, qd=DNSQR(qname="3.0.5.10.in-addr.arpa", qtype="PTR"),
              an=DNSRR(rrname="3.0.5.10.in-addr.arpa", type="PTR", rdata="db.example.org"))]
    for srv, sport in (("10.5.0.2", 41000), ("10.5.0.3", 41001)):
        pk += [Ether() / IP(src=c, dst=srv) / TCP(sport=sport, dport=80, flags="S", seq=1000),
               Ether() / IP(src=srv, dst=c) / TCP(sport=80, dport=sport, flags="SA", seq=5000, ack=1001),
               Ether() / IP(src=c, dst=srv) / TCP(sport=sport, dport=80, flags="A", seq=1001, ack=5001)]
    for i, p in enumerate(pk):
        p.time = 1_700_000_000 + i * 0.01
    f = tmp_path / "dns.pcap"
    wrpcap(str(f), pk)
    return f


def test_names_from_dns_answers_beside_addresses(dns_capture):
    out = run("paths", str(dns_capture)).stdout
    assert "www.example.com (10.5.0.2)" in out              # the name the client asked, not the CNAME target
    assert "db.example.org (10.5.0.3)" in out               # PTR
    seg = run("segments", str(dns_capture)).stdout
    assert "www.example.com[10.5.0.2]:80" in seg
    numeric = run("paths", str(dns_capture), "-n").stdout
    assert "example" not in numeric and "10.5.0.2" in numeric
    doc = json.loads(run("paths", str(dns_capture), "--format", "json").stdout)
    assert {p["server_name"] for p in doc["paths"]} == {"www.example.com", "db.example.org"}


def test_names_never_come_from_a_live_lookup(dns_capture, monkeypatch):
    import socket
    from tcpfsm.path.names import names_of

    def refuse(*a, **k):
        raise AssertionError("live DNS lookup")
    for fn in ("gethostbyaddr", "getaddrinfo", "gethostbyname", "getnameinfo"):
        monkeypatch.setattr(socket, fn, refuse)
    an = tcpfsm.analyze(str(dns_capture))
    names = names_of(an)
    assert names.name("10.5.0.2") == "www.example.com" and names.name("10.5.0.1") is None
