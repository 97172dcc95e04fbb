"""Streaming (bounded memory) gives the same answers as the whole-capture analysis.

With `stream=True` finished connections are handed out and forgotten while
the capture is read; every flow, transition and finding must still come out
exactly as when everything is kept.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import tcpfsm
from tcpfsm.render.records import aggregate_record, flow_record

CAPTURES = sorted((Path(__file__).resolve().parent.parent / "captures").glob("*/*.pcap"))


def _both(path: str, **kw):
    whole = tcpfsm.analyze(path, path_health=False, **kw)     # (path health needs the whole capture: not streamed)
    handed = []
    streamed = tcpfsm.analyze(path, stream=True, on_flow=handed.append, batch_size=64, **kw)
    return whole, streamed, handed


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_streaming_matches_whole_capture(path):
    whole, streamed, handed = _both(str(path))
    got = {f.id: flow_record(f) for f in handed + streamed.flows}
    want = {f.id: flow_record(f) for f in whole.flows}
    assert got == want
    assert [aggregate_record(a) for a in streamed.findings] == [aggregate_record(a) for a in whole.findings]
    assert streamed.summary()["flows"] == whole.summary()["flows"]
    peaks = lambda an: {k: (p.count, p.ts, p.flows) for k, p in an.pile_peaks.items()}  # noqa: E731
    assert peaks(streamed) == peaks(whole)


def test_streaming_forgets_finished_connections():
    path = str(Path(__file__).resolve().parent.parent / "captures" / "crafted" / "time_wait_pile.pcap")
    whole, streamed, handed = _both(path, timers={"time_wait": 1})
    # 300 connections over 20 s; each leaves 10 s (stale_after) after its TIME_WAIT is over
    assert len(handed) + len(streamed.flows) == 300
    assert len(handed) > 100 and len(streamed.flows) < 200
    assert streamed.summary()["evicted"]["finished"] == len(handed)
    with pytest.raises(ValueError):
        streamed.netstat("+1s")


def test_table_cap_evicts_half_open_first_and_counts_it():
    path = str(Path(__file__).resolve().parent.parent / "captures" / "crafted" / "syn_flood_spoofed.pcap")
    handed = []
    an = tcpfsm.analyze(path, stream=True, on_flow=handed.append, max_flows=100, batch_size=64)
    ev = an.summary()["evicted"]
    # attempts younger than the settling time are "forced" (their findings may differ from an uncapped run)
    assert ev.get("half_open", 0) + ev.get("forced", 0) > 300 and len(an.flows) <= 100 + 64  # cap checked per batch
    assert not ev.get("idle")
    assert any(a.kind == "syn_flood" for a in an.findings)


def test_a_connection_replaced_on_its_4_tuple_is_still_evicted_once_finished():
    """TIME_WAIT reuse puts a new connection on the old one's 4-tuple; the old one must still leave the
    table when finished, or a long capture full of port reuse grows without bound."""
    from tcpfsm.capture.reader import open_capture
    from tcpfsm.fsm import get_profile
    from tcpfsm.track.flowtable import FlowTable
    path = Path(__file__).resolve().parent.parent / "captures" / "crafted" / "tw_reuse.pcap"
    table = FlowTable(get_profile(), stale_after=0.5, forget_finished=True)
    for batch in open_capture(str(path)).batches():
        table.feed_batch(batch)
    gone = table.evict_finished(table.clock + 10**9)
    assert [f.id for f in gone] == [1] and [f.id for f in table.flows] == [2]
