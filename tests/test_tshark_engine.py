"""The tshark engine (tcpfsm.capture.tshark_engine) against the fast reader on every capture in captures/."""
from __future__ import annotations

import glob
import os
import shutil

import numpy as np
import pytest

import tcpfsm.capture.tshark_engine as te
from tcpfsm.capture import CaptureError, open_capture
from tcpfsm.capture.batch import ALL_COLUMNS
from tcpfsm.fsm import get_profile
from tcpfsm.track.flowtable import FlowTable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAPS = os.path.join(ROOT, "captures")
ALL = sorted(os.path.relpath(p, CAPS) for p in glob.glob(os.path.join(CAPS, "**", "*.pcap*"), recursive=True)
             if os.path.isfile(p))

# Excluded from the column-by-column comparison, with the reason:
COLUMN_EXCLUDED = {
    # the snaplen cuts inside TCP headers/options: tshark decodes partial headers (and a timestamp
    # option cut in half) that the fast reader skips as truncated_tcp_header / leaves unparsed
    os.path.join("links", "snap54.pcap"): "snaplen cuts TCP headers",
    os.path.join("links", "snap74.pcap"): "snaplen cuts the timestamp option",
}
# Skip counters are compared where tshark can tell the reason the same way (see the module docstring):
# not on deliberately damaged or cut records.
SKIP_EXCLUDED = set(COLUMN_EXCLUDED)

needs_tshark = pytest.mark.skipif(te.tshark_path() is None, reason="tshark not installed")


def columns(batches):
    return {k: (np.concatenate([b.cols[k] for b in batches]) if batches else np.zeros(0, dt))
            for k, dt in ALL_COLUMNS.items()}


def flows(batches):
    ft = FlowTable(get_profile())
    for b in batches:
        ft.feed_batch(b)
    ft.finish()
    return [(f.client, f.server, [(t.endpoint, t.old, t.new, t.packet, t.cause) for t in f.transitions])
            for f in ft.flows]


@pytest.fixture(scope="module")
def tshark_decoded():
    """Every capture decoded by the tshark engine, in parallel (tshark's start-up dominates)."""
    from concurrent.futures import ThreadPoolExecutor

    def run(name):
        c = te.open_capture_tshark(os.path.join(CAPS, name))
        return name, (c, list(c.batches(1000)))
    with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 2) * 2)) as ex:
        return dict(ex.map(run, ALL))


def test_capture_list_is_not_empty():
    assert len(ALL) > 50 and any(p.startswith("tunnels") for p in ALL)


@needs_tshark
@pytest.mark.parametrize("name", ALL)
def test_engines_agree(name, tshark_decoded):
    path = os.path.join(CAPS, name)
    c1 = open_capture(path)
    b1 = list(c1.batches())
    c2, b2 = tshark_decoded[name]
    assert all(0 < len(b) <= 1000 for b in b2)
    i1, i2 = c1.info, c2.info
    assert i2.records == i1.records
    assert i2.records == i2.tcp_segments + sum(i2.skipped.values())
    assert (i2.first_ts, i2.last_ts) == (i1.first_ts, i1.last_ts)
    assert (i2.format, i2.compressed) == (i1.format, i1.compressed)
    if i1.format == "pcap":
        assert (i2.linktypes, i2.ts_resolution) == (i1.linktypes, i1.ts_resolution)
    assert i2.truncated == i1.truncated
    if name in COLUMN_EXCLUDED:
        assert flows(b2) == flows(b1)          # the columns differ where options are cut; the states do not
        return
    a, b = columns(b1), columns(b2)
    for k in ALL_COLUMNS:
        assert a[k].dtype == b[k].dtype, k
        assert np.array_equal(a[k], b[k]), (k, a[k], b[k])
    assert i2.tunnels == i1.tunnels
    assert i2.tcp_segments == i1.tcp_segments
    if name not in SKIP_EXCLUDED:
        assert dict(i2.skipped) == dict(i1.skipped)
    assert flows(b2) == flows(b1)


@needs_tshark
@pytest.mark.parametrize("name", ["tunnels/nested.pcap", "tunnels/gtpu.pcap", "links/two_if.pcapng",
                                  "links/ipv6_ext.pcap"])
def test_pyshark_backend_agrees_with_fields_backend(name):
    path = os.path.join(CAPS, name)
    c1 = te.open_capture_tshark(path)
    a = columns(list(c1.batches()))
    c2 = te.open_capture_tshark(path, backend="pyshark")
    b = columns(list(c2.batches()))
    for k in ALL_COLUMNS:
        assert np.array_equal(a[k], b[k]), k
    assert c1.info.skipped == c2.info.skipped and c1.info.tunnels == c2.info.tunnels


def test_tshark_missing(monkeypatch):
    monkeypatch.setattr(te, "tshark_path", lambda: None)
    with pytest.raises(CaptureError) as e:
        te.open_capture_tshark(os.path.join(CAPS, "links", "eth.pcap"))
    assert str(e.value) == ("tshark not found: install Debian's tshark package (apt-get install tshark) "
                            "or use the default engine")


@needs_tshark
def test_errors(tmp_path):
    with pytest.raises(CaptureError, match="no such file"):
        te.open_capture_tshark(str(tmp_path / "nope.pcap"))
    bad = tmp_path / "text.pcap"
    bad.write_text("hello, this is not a capture\n")
    with pytest.raises(CaptureError, match="tshark cannot read it"):
        list(te.open_capture_tshark(str(bad)).batches())
    c = te.open_capture_tshark(os.path.join(CAPS, "links", "eth.pcap"))
    list(c.batches())
    with pytest.raises(CaptureError, match="already read"):
        list(c.batches())


@needs_tshark
def test_tshark_found_by_path_lookup():
    assert os.path.samefile(te.tshark_path(), shutil.which("tshark"))


def test_record_times_beyond_int64_are_held_to_its_range():
    """A damaged pcapng record time near 2**64 µs (found by make fuzz: tshark prints 18446744069819.344425 s)
    is held to the int64 ns range as the fast and dpkt engines hold it, not an OverflowError."""
    from tcpfsm.capture.tshark_engine import _ts_ns
    assert _ts_ns("18446744069819.344425000") == (1 << 63) - 1
    assert _ts_ns("-18446744069819.5") == -(1 << 63)
    assert _ts_ns("1700000000.125456791") == 1_700_000_000_125_456_791
