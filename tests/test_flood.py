"""A spoofed SYN flood is summarised as what it is, in memory bounded by the tracking cap (issue 12 part 1).

The floods are generated (tests/floodgen.py: numpy, no scapy) -- the kernel will not send SYNs from a
million addresses. Half the SYNs get a SYN+ACK that is never retransmitted (a SYN-cookie server).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import tcpfsm
from floodgen import write_flood

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def flood(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("flood") / "flood40k.pcap")
    write_flood(path, 40_000, seconds=8.0, answered=0.5)      # 5,000 attempts a second, 60,000 packets
    return path


def _kinds(an) -> dict:
    return {f.kind: (f.count, f.host, f.service) for f in an.findings}


def test_flood_is_one_finding_per_target(flood):
    """Without the cap in play: one syn_flood and one unanswered_syn for the target service, not one row
    per spoofed source."""
    an = tcpfsm.analyze(flood, max_flows=50_000)
    k = _kinds(an)
    assert k["syn_flood"] == (40_000, "10.0.0.1", "10.0.0.1:80")
    assert [f.kind for f in an.findings].count("unanswered_syn") == 1
    assert k["unanswered_syn"][1:] == ("10.0.0.1", "10.0.0.1:80")
    assert an.summary()["not_kept"] == 0 and len(an.flows) == 40_000


def test_evicted_attempts_are_counted_not_kept_and_findings_hold(flood):
    """Over the cap, half-open attempts that have settled (silent past the unanswered-SYN threshold and the
    SYN-cookie check) are summarised and dropped: the flows kept stay under the cap, every attempt is
    counted, and the findings are those of the uncapped run, kind and count."""
    full = tcpfsm.analyze(flood)
    an = tcpfsm.analyze(flood, max_flows=20_000)
    s = an.summary()
    assert len(an.flows) <= 20_000 and s["not_kept"] == 40_000 - len(an.flows)
    assert s["flows"] == 40_000 and s["max_tracked"] == 20_000
    assert s["evicted"] == {"half_open": s["not_kept"]}          # none forced: 2 s of attempts fit the cap
    assert _kinds(an) == _kinds(full)
    streamed = tcpfsm.analyze(flood, stream=True, max_flows=20_000)
    assert _kinds(streamed) == _kinds(full)


def test_a_cap_too_small_forces_evictions_and_says_so(flood):
    an = tcpfsm.analyze(flood, max_flows=2_000)
    s = an.summary()
    assert s["evicted"].get("forced", 0) > 0 and s["not_kept"] == 40_000 - len(an.flows)
    assert {f.kind for f in an.findings} >= {"syn_flood", "unanswered_syn"}
    out = subprocess.run([sys.executable, "-m", "tcpfsm.cli", "analyze", flood, "--max-tracked", "2000",
                          "--no-stream", "--max-flows", "1"], capture_output=True, text=True, check=True).stdout
    assert "half-open attempts over the tracking cap (2000)" in out and "forced" in out


def test_default_cap_is_derived_from_memory():
    from tcpfsm.api import TABLE_BUDGET, TRACKED_BYTES, default_max_tracked
    n = default_max_tracked()
    assert 10_000 <= n <= TABLE_BUDGET // TRACKED_BYTES


def test_flood_memory_is_bounded_by_the_cap(tmp_path):
    """200,000 spoofed SYNs through the CLI (whole-capture JSON) with a 20,000 cap: peak memory stays far
    below what keeping every attempt costs (~2.6 KB each, 520 MB here)."""
    path = str(tmp_path / "flood200k.pcap")
    write_flood(path, 200_000, seconds=40.0, answered=0.5)
    out = str(tmp_path / "out.json")
    # VmHWM, not getrusage: ru_maxrss survives fork+exec, so a child of a big pytest process would report
    # the parent's size
    code = ("import sys; from tcpfsm.cli import main; sys.argv = ['tcpfsm'] + sys.argv[1:]\n"
            "try:\n    main()\nfinally:\n"
            "    print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0], "
            "file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code, "analyze", path, "--format", "json", "-o", out,
                        "--no-stream", "--max-tracked", "20000", "-q"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    peak_kb = int(r.stderr.strip().splitlines()[-1])
    with open(out) as f:
        doc = json.load(f)
    assert doc["summary"]["flows"] == 200_000 and len(doc["flows"]) <= 20_000
    assert [f["kind"] for f in doc["anomalies"]].count("syn_flood") == 1
    assert peak_kb < 400_000, f"peak {peak_kb} KB"      # ~2.6 KB x 200,000 would be 520 MB more


def test_evicted_connections_keep_their_later_segments(tmp_path):
    """Streaming with a cap below the connections alive: the ones pushed out while ESTABLISHED send again
    later; those segments are counted as theirs, never a new midstream connection (issue 12 part 2)."""
    from floodgen import write_established
    path = str(tmp_path / "est.pcap")
    write_established(path, 3000, seconds=3.0, late_at=20.0)
    full = tcpfsm.analyze(path)
    assert len(full.flows) == 3000
    an = tcpfsm.analyze(path, stream=True, max_flows=1000, batch_size=500)
    s = an.summary()
    assert s["flows"] == 3000 and s["evicted"].get("idle", 0) > 0
    # each one evicted ESTABLISHED sends exactly one more; one evicted mid-handshake also has its last
    # handshake segments counted there
    assert s["segments_after_eviction"] >= s["evicted"]["idle"]
    assert s["segments_after_eviction"] <= sum(s["evicted"].values()) * 3
    assert s["non_rfc_transitions"] == 0 and not any(f.role_inferred for f in an.flows)


def test_streaming_with_a_cap_keeps_the_reconnect_findings(tmp_path):
    """Connections that never close, one client reconnecting to one service (bench/make_load.py's
    never-closing capture, smaller): streamed with a cap far below the connections alive, the idle ones are
    evicted long before the end, yet the reconnect form of vanished_peer (it needs the capture's end and every
    later connection) is judged from their compact records at the end: the same flows and the same findings,
    kind and count, as the whole-capture run; no handshake under way is evicted (its next segments would be
    lost)."""
    sys.path.insert(0, os.path.join(HERE, "..", "bench"))
    from make_load import open_conns
    from pathlib import Path
    path = tmp_path / "open.pcap"
    open_conns(Path(path), 6000, rate=100.0)
    full = tcpfsm.analyze(str(path))
    an = tcpfsm.analyze(str(path), stream=True, max_flows=1000, batch_size=500)

    def counts(a):
        return sorted((f.kind, f.host, f.count) for f in a.findings)
    assert counts(full) and counts(an) == counts(full)
    assert [f.kind for f in full.findings].count("vanished_peer") >= 1
    s = an.summary()
    assert s["flows"] == len(full.flows) == 6000
    assert s["evicted"].get("idle", 0) > 4000
    assert s["evicted"].get("half_open", 0) == s["evicted"].get("forced", 0) == s["segments_after_eviction"] == 0


def _findings(an) -> list:
    return [(f.kind, f.severity, f.ts, f.ts_end, f.count, f.flows, f.message, f.host, f.service) for f in an.findings]


@pytest.mark.parametrize("cap", [20_000, 2_000])
def test_the_short_way_for_evicted_attempts_gives_the_long_ways_findings(flood, cap, monkeypatch):
    """Aggregator._attempt (evicted attempts that got no answer, rolled up without their per-flow findings)
    against the per-flow rules it stands for: every finding identical, message and sample included."""
    from tcpfsm.detect.aggregate import Aggregator
    short = tcpfsm.analyze(flood, max_flows=cap)
    monkeypatch.setattr(Aggregator, "_attempt", lambda self, f, end: False)
    long = tcpfsm.analyze(flood, max_flows=cap)
    assert _findings(short) == _findings(long) and short.summary() == long.summary()


def test_the_short_way_on_kernel_recordings(monkeypatch):
    """The same on every kernel recording with a cap of one connection (SYNs retransmitted into silence,
    refused connects, ICMP-ended connects: what must leave the short way, does)."""
    from tcpfsm.detect.aggregate import Aggregator
    import glob
    files = sorted(glob.glob(os.path.join(HERE, "..", "captures", "kernel", "*.pcap")) +
                   glob.glob(os.path.join(HERE, "..", "captures", "icmp", "*.pcap")))
    assert files
    short = [_findings(tcpfsm.analyze(p, max_flows=1)) for p in files]
    monkeypatch.setattr(Aggregator, "_attempt", lambda self, f, end: False)
    long = [_findings(tcpfsm.analyze(p, max_flows=1)) for p in files]
    assert short == long


@pytest.mark.parametrize("stream", [True, False])
def test_evicted_attempts_are_let_go_of_in_both_modes(flood, stream, monkeypatch):
    """A connection that leaves the table unfinished (evicted over the cap) is let go of by the piles in both
    modes (PileCounter.release): the stays kept follow the connections tracked, not every spoofed source
    (streaming kept all of them: 2.6 GB on 20 million SYNs). What stays: the answered attempts forced out
    younger than the SYN-cookie check, in the server's SYN_RECEIVED pile (one that matters), about 1.5 s of
    the flood's 5,000 attempts a second."""
    from tcpfsm.detect.aggregate import Aggregator
    seen = []
    orig = Aggregator.finish
    monkeypatch.setattr(Aggregator, "finish", lambda self, rem, end: (seen.append(self), orig(self, rem, end))[1])
    an = tcpfsm.analyze(flood, stream=stream, max_flows=2_000)
    piles = seen[0].piles
    assert sum(an.evicted.values()) > 30_000
    assert len(piles.stay) <= 2_000 + 5_000 * 1.5 and len(piles.live) <= 2_000 + 10
    # nor are they their clients' newest connections (the reconnect index): in either mode
    assert len(seen[0].newest) <= 2_000
