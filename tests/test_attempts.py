"""A connection that is one SYN so far, held as an Attempt record, is the flow it stands for (issue 12).

The whole-capture analysis keeps such a connection as a compact record (tcpfsm/track/_runs.py: Attempt)
until its next segment, its SYN_SENT timer, an ICMP error or the capture's end makes it a Flow, and
summarises it from the record when the cap evicts it first (tcpfsm/detect/_tally.py). Nothing downstream
may tell: every capture, and floods that run through every eviction path (settled and forced, the
unanswered-SYN roll-up's first and the rest, sources seen again, SYN-cookie answers, timers that come due
while held), give the same document as the table that makes a Flow of every connection at once.
"""
from __future__ import annotations

import io

import numpy as np
import pytest

import tcpfsm
import tcpfsm.api as api
from floodgen import ACK, SYN, SERVER_IP, packets, write_flood, write_records
from tcpfsm.render.records import write_analysis_json
from tcpfsm.track.flowtable import Attempt, FlowTable
from test_decoders import capture_files


def _document(path: str, hold: bool, monkeypatch, **kw) -> bytes:
    """The JSON document of a whole-capture analysis, attempts held or every connection a Flow at once."""
    def table(*a, **k):
        k["attempts"] = hold
        return FlowTable(*a, **k)
    with monkeypatch.context() as m:
        m.setattr(api, "FlowTable", table)
        an = tcpfsm.analyze(path, **kw)
    buf = io.BytesIO()
    write_analysis_json(an, buf)
    return buf.getvalue()


def _same(path: str, monkeypatch, **kw) -> None:
    held = _document(path, True, monkeypatch, **kw)
    assert held == _document(path, False, monkeypatch, **kw)


@pytest.mark.parametrize("path", capture_files())
def test_every_capture_is_the_same_with_attempts_held(path, monkeypatch):
    _same(path, monkeypatch, batch_size=512)


def _mixed(path: str, n: int, seconds: float, seed: int, answered: float = 0.0) -> str:
    """A spoofed flood of `n` SYNs over `seconds` (a share `answered` SYN+ACKed once: a SYN cookie), and
    what passes through the table beside it: a scanner trying 300 ports of the server, half of them
    refused by RST+ACK; flood sources that retransmit their SYN 1 s later, and others 2.5 s later (their
    attempt maybe evicted by then: a new connection), sources that send a bare ACK 2 s later (one evicted:
    counted as its own late segment), and 50 clients whose handshake completes 40 ms later."""
    write_flood(path, n, seconds=seconds, answered=answered, seed=seed)
    rng = np.random.default_rng(seed + 100)
    with open(path, "rb") as f:
        f.read(24)
        recs = np.frombuffer(f.read(), np.uint8).reshape(-1, 70)
    stamp = (recs[:, 0:4].copy().view("<u4")[:, 0].astype(np.int64) * 1_000_000
             + recs[:, 4:8].copy().view("<u4")[:, 0].astype(np.int64))
    is_syn = recs[:, 63] == SYN           # (the TCP flags: 16 + 14 + 20 + 13)
    syn, t0 = recs[is_syn], stamp[is_syn]
    src = syn[:, 42:46].copy().view(">u4")[:, 0]
    sport = syn[:, 50:52].copy().view(">u2")[:, 0].astype(np.uint32)
    isn = syn[:, 54:58].copy().view(">u4")[:, 0]
    parts, ts = [recs], [stamp]
    for delay, k, flags in ((1_000_000, 200, SYN), (2_500_000, 200, SYN), (2_000_000, 200, ACK)):
        pick = np.sort(rng.choice(len(syn), k, replace=False))
        t = t0[pick] + delay
        seq = isn[pick] if flags == SYN else ((isn[pick].astype(np.uint64) + 1) & 0xFFFFFFFF).astype(np.uint32)
        parts.append(packets(t, src[pick], SERVER_IP, sport[pick], 80, seq, 0 if flags == SYN else 12345,
                             flags, True))
        ts.append(t)
    m = 300
    t = t0[0] + (np.arange(m, dtype=np.int64) * int(seconds * 1e6)) // m + 7
    ports = 1000 + np.arange(m, dtype=np.uint32)
    sc = np.full(m, 0x0A090909, np.uint32)
    s_isn = rng.integers(0, 1 << 32, m, dtype=np.uint64).astype(np.uint32)
    parts.append(packets(t, sc, SERVER_IP, np.full(m, 40000, np.uint32), ports, s_isn, 0, SYN, True))
    ts.append(t)
    half = np.arange(0, m, 2)
    parts.append(packets(t[half] + 50, SERVER_IP, sc[half], ports[half], np.full(len(half), 40000, np.uint32), 0,
                         ((s_isn[half].astype(np.uint64) + 1) & 0xFFFFFFFF).astype(np.uint32), 0x04 | ACK, False))
    ts.append(t[half] + 50)
    c = 50
    t = t0[0] + (np.arange(c, dtype=np.int64) * int(seconds * 1e6)) // c + 13
    cip = (0x0A0A0000 + np.arange(c)).astype(np.uint32)
    cp = rng.integers(1024, 65536, c, dtype=np.uint32)
    ci = rng.integers(0, 1 << 32, c, dtype=np.uint64)
    si = rng.integers(0, 1 << 32, c, dtype=np.uint64)
    c1, s1 = ((ci + 1) & 0xFFFFFFFF).astype(np.uint32), ((si + 1) & 0xFFFFFFFF).astype(np.uint32)
    for dt, sender in ((0, "c"), (40_000, "s"), (80_000, "c")):
        if sender == "s":
            parts.append(packets(t + dt, SERVER_IP, cip, 443, cp, si.astype(np.uint32), c1, SYN | ACK, False))
        else:
            parts.append(packets(t + dt, cip, SERVER_IP, cp, 443, ci.astype(np.uint32) if dt == 0 else c1,
                                 0 if dt == 0 else s1, SYN if dt == 0 else ACK, True))
        ts.append(t + dt)
    write_records(path, parts, ts)
    return path


@pytest.mark.parametrize("cap", [1_500, 4_000, 50_000])
@pytest.mark.parametrize("answered", [0.0, 0.5])
def test_floods_through_every_eviction_path(tmp_path, monkeypatch, cap, answered):
    """6,000 attempts in 3 s: a cap of 1,500 forces evictions (younger than the unanswered-SYN threshold),
    4,000 lets them settle first, 50,000 evicts none; half of them answered by a SYN cookie or none."""
    path = _mixed(str(tmp_path / "flood.pcap"), 6_000, 3.0, seed=7, answered=answered)
    _same(path, monkeypatch, max_flows=cap)
    _same(path, monkeypatch, max_flows=cap, batch_size=300)


def test_timers_that_come_due_while_held(tmp_path, monkeypatch):
    """A short SYN_SENT timer fires while attempts are held: they become flows whose timer fires at the
    same batch as it would have."""
    path = _mixed(str(tmp_path / "flood.pcap"), 3_000, 6.0, seed=3)
    _same(path, monkeypatch, timers={"syn_sent_timeout": 0.7}, max_flows=2_000)
    _same(path, monkeypatch, timers={"syn_sent_timeout": 2.5})


def test_a_flood_is_mostly_held_and_evicted_as_records(tmp_path):
    """The point of it: a spoofed flood's attempts never become flows when the cap evicts them first."""
    path = _mixed(str(tmp_path / "flood.pcap"), 6_000, 3.0, seed=11)
    made = []
    real = FlowTable.expand

    def counting(self, a):
        made.append(a.id)
        return real(self, a)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(FlowTable, "expand", counting)
        an = tcpfsm.analyze(path, max_flows=1_500)
    s = an.summary()
    assert s["not_kept"] > 4_000
    # the SYN_SENT wait read once, the first of each roll-up, and the attempts still tracked at the end
    assert len(made) <= 1 + 2 + len(an.flows)
    assert not any(isinstance(f, Attempt) for f in an.flows)
