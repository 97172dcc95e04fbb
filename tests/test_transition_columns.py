"""What the state piles sort and count transitions by, read by the machine's kernel
(`tcpfsm.fsm.transition_columns`, compiled and uncompiled), equals what the pile counter's own reading
(`tcpfsm/detect/_piles.py: _columns`, attribute by attribute) gives, on every capture and with held
attempts standing in for flows; and the order `ordered` hands the counter is the one `order` finds alone."""
from __future__ import annotations

import importlib

import numpy as np
import pytest

from tcpfsm.capture.reader import open_capture
from tcpfsm.detect import piles
from tcpfsm.fsm import get_profile
from tcpfsm.track.flowtable import FlowTable
from test_decoders import capture_files

_piles = piles._piles
FORMS = [importlib.import_module("tcpfsm.fsm.machine")]
try:
    FORMS.append(importlib.import_module("tcpfsm.fsm.machine_c"))
except ImportError:
    pass


def _drained(path: str, batch: int = 512) -> list:
    """Every (flow, transition) pair a whole-capture table hands the piles, held attempts included."""
    cap = open_capture(path)
    table = FlowTable(get_profile("linux"), attempts=True, max_flows=64)   # (a small cap: attempts evicted)
    items = []
    for b in cap.batches(batch):
        table.feed_batch(b)
        table.advance(table.clock)
        items += table.drain()
        table.enforce_cap(2 * 10**9)
        items += table.drain()
    table.finish(cap.info.last_ts)
    return items + table.drain()


def _check(items: list) -> None:
    ts0, ep0, code0 = _piles._columns(items)
    for mod in FORMS:
        n = len(items)
        ts, ep, new = np.full(n, -9, np.int64), np.full(n, -9, np.int64), np.full(n, -9, np.int64)
        mod.transition_columns(items, ts, ep, new)
        assert ts.tolist() == ts0.tolist() and ep.tolist() == ep0.tolist(), mod.__name__
        assert _piles._LISTED_CODE[new].tolist() == code0.tolist(), mod.__name__
    got, alone = piles.ordered(items), _piles.order(items)
    assert list(got) == list(alone)
    assert all(a.tolist() == b.tolist() for a, b in zip(got.cols, alone.cols))


@pytest.mark.parametrize("path", capture_files())
def test_columns_equal_the_counters_own_reading(path):
    _check(_drained(path))


def test_held_attempts_are_read_as_their_stand_in_transition(tmp_path):
    from floodgen import write_flood
    path = str(tmp_path / "flood.pcap")
    write_flood(path, 3000, seconds=1.0, answered=0.3)
    items = _drained(path)
    assert any(type(t).__name__ == "Attempt" for _, t in items)
    _check(items)
