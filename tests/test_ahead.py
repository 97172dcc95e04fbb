"""Reading ahead (tcpfsm/capture/ahead.py): the same batches in the same order, errors where they happened,
no thread or open capture left behind -- and an analysis identical with and without it."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tcpfsm import api
from tcpfsm.capture.ahead import read_ahead
from tcpfsm.capture.batch import CaptureError
from tcpfsm.render import records

ROOT = Path(__file__).resolve().parent.parent
KERNEL = ROOT / "captures" / "kernel"


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "tcpfsm-read-ahead"]


def test_items_in_order_from_another_thread():
    seen = []

    def gen():
        for i in range(50):
            seen.append(threading.current_thread().name)
            yield i
    assert list(read_ahead(gen(), 3)) == list(range(50))
    assert set(seen) == {"tcpfsm-read-ahead"}
    assert not _workers()


def test_depth_zero_is_the_iterator_itself():
    def gen():
        yield threading.current_thread().name
    assert list(read_ahead(gen(), 0)) == [threading.current_thread().name]


def test_an_error_comes_after_the_items_before_it_and_closes_the_reader():
    closed = []

    def gen():
        try:
            yield 1
            yield 2
            raise CaptureError("x.pcap: truncated record")
        finally:
            closed.append(True)
    it = read_ahead(gen(), 2)
    assert next(it) == 1
    assert next(it) == 2
    with pytest.raises(CaptureError, match="truncated record"):
        next(it)
    assert closed == [True]
    assert not _workers()


def test_a_consumer_that_stops_early_stops_and_joins_the_worker():
    made, closed = [], []

    def gen():
        try:
            for i in range(10_000):
                made.append(i)
                yield i
        finally:
            closed.append(True)
    it = read_ahead(gen(), 2)
    assert next(it) == 0
    time.sleep(0.2)                  # the worker fills the queue and waits
    assert len(made) <= 1 + 2 + 1    # (the one handed out, the queue's two, one waiting to be put)
    it.close()
    assert closed == [True]          # the reader's finally ran (in the worker) before close() returned
    assert not _workers()


def _signature(an):
    flows = [records.flow_record(f) for f in an.flows]
    trs = [(f.id, [(t.ts, t.endpoint, t.old, t.new, t.packet, t.cause, t.retracted, t.alt) for t in f.transitions])
           for f in an.flows]
    return flows, trs, [(a.kind, a.ts, a.count, a.message) for a in an.findings], an.summary()


@pytest.mark.parametrize("name", ["concurrent_mixed", "close_wait_leak"])
def test_analysis_is_the_same_with_and_without_reading_ahead(monkeypatch, name):
    src = str(KERNEL / f"{name}.pcap")
    ahead = api.analyze(src, batch_size=64)          # small batches: many handed across the thread
    monkeypatch.setattr(api, "READ_AHEAD", 0)
    inline = api.analyze(src, batch_size=64)
    a, b = _signature(ahead), _signature(inline)
    a[3].pop("timings", None), b[3].pop("timings", None)
    assert a == b


def test_a_truncated_capture_is_analysed_as_far_as_it_goes_either_way(monkeypatch, tmp_path):
    data = (KERNEL / "concurrent_mixed.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) * 2 // 3])
    ahead = api.analyze(str(cut), batch_size=64)
    monkeypatch.setattr(api, "READ_AHEAD", 0)
    inline = api.analyze(str(cut), batch_size=64)
    a, b = _signature(ahead), _signature(inline)
    a[3].pop("timings", None), b[3].pop("timings", None)
    assert a == b
    assert a[3]["records"] > 0
    assert not _workers()


def test_the_switch_interval_is_lowered_while_a_worker_runs_and_put_back():
    import sys
    from tcpfsm.capture import ahead
    was = sys.getswitchinterval()
    seen = []

    def gen():
        for i in range(5):
            yield i
    for _ in read_ahead(gen(), 2):
        seen.append(sys.getswitchinterval())
    assert seen and all(x <= ahead.SWITCH for x in seen) and ahead.SWITCH < was
    assert sys.getswitchinterval() == was
