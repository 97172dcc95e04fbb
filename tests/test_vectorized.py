"""The vectorized tracker (rows grouped by connection, walked by the compiled `walk_groups` of
tcpfsm/fsm/machine.py, steady runs counted by `Connection.feed_plain_rows`) equals the per-segment tracker.

Every capture, several batch sizes, and random segment streams: the same flows, transitions, counters
and sequence bookkeeping, field by field.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcpfsm.capture.batch import Batch
from tcpfsm.capture.reader import open_capture
from tcpfsm.fsm import get_profile
from tcpfsm.render.records import flow_record
from tcpfsm.track.flowtable import FlowTable

CAPTURES = sorted((Path(__file__).resolve().parent.parent / "captures").glob("*/*.pcap*"))
FIELDS = ("state", "packets", "payload", "ip_bytes", "retrans", "retrans_unanswered", "zero_windows", "first_ts",
          "last_ts", "last_data_ts", "snd_nxt", "ack_sent", "win", "syns", "synacks", "fins", "rsts", "isn",
          "fin_seq", "deadline")


def _table(batches, vectorized: bool) -> FlowTable:
    t = FlowTable(get_profile(), vectorized=vectorized)
    t.VECTOR_MIN = 1
    for b in batches:
        t.feed_batch(b)
    t.finish()
    return t


def _same(a: FlowTable, b: FlowTable) -> None:
    assert [f.id for f in a.flows] == [f.id for f in b.flows]
    for x, y in zip(a.flows, b.flows):
        assert flow_record(x) == flow_record(y)
        assert (x.reuse_of, x.last_ts) == (y.reuse_of, y.last_ts)
        for role in ("client", "server"):
            ex, ey = getattr(x.conn, role), getattr(y.conn, role)
            assert {f: getattr(ex, f) for f in FIELDS} == {f: getattr(ey, f) for f in FIELDS}, (x.id, role)
    assert (a.clock_stats.backwards_steps, a.clock_stats.largest_step_ns) == \
        (b.clock_stats.backwards_steps, b.clock_stats.largest_step_ns)


@pytest.mark.parametrize("size", [64, 4096])
@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_vectorized_tracker_equals_per_segment_tracker(path, size):
    batches = list(open_capture(str(path)).batches(size))
    _same(_table(batches, False), _table(batches, True))


def _addr(i: int) -> bytes:
    return b"\x00" * 10 + b"\xff\xff" + bytes([10, 0, 0, i])


segment = st.tuples(
    st.integers(0, 2),                                    # which connection (4-tuple)
    st.booleans(),                                        # from the lower side
    st.sampled_from([0x02, 0x12, 0x10, 0x18, 0x11, 0x14, 0x04, 0x10, 0x18, 0x10]),
    st.integers(0, 3000),                                 # seq offset
    st.integers(0, 3000),                                 # ack offset
    st.sampled_from([0, 0, 100, 1448]),                   # payload
    st.sampled_from([0, 512, 65535]),                     # window
    st.integers(0, 2_000_000_000),                        # time step (ns)
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(segment, min_size=1, max_size=200), st.integers(1, 64))
def test_random_streams_give_identical_tables(segs, size):
    n = len(segs)
    b = Batch.empty(n)
    c = b.cols
    t = 1_700_000_000 * 10**9
    for i, (conn, lo, flags, so, ao, plen, win, dt) in enumerate(segs):
        t += dt
        a, z = (_addr(1), 40000 + conn), (_addr(2), 80)
        (src, sp), (dst, dp) = (a, z) if lo else (z, a)
        c["index"][i], c["ts"][i], c["family"][i] = i + 1, t, 4
        c["src"][i], c["dst"][i] = np.void(src), np.void(dst)
        c["sport"][i], c["dport"][i] = sp, dp
        c["flags"][i], c["plen"][i], c["win"][i] = flags, plen, win
        c["seq"][i] = (1000 * (1 if lo else 7) + so) & 0xFFFFFFFF
        c["ack"][i] = (1000 * (7 if lo else 1) + ao) & 0xFFFFFFFF
        c["wscale"][i], c["ip_len"][i] = -1, 40 + plen
    batches = [Batch({k: v[i:i + size] for k, v in c.items()}) for i in range(0, n, size)]
    _same(_table(batches, False), _table(batches, True))
