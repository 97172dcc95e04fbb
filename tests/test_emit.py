"""The JSON emitter (tcpfsm/render/_emit.py, via records.FlowEncoder) writes exactly the bytes orjson writes
for the records (flow records, and the jsonl transition and flow_end events): every flow of every capture, of generated floods and open connections, and of the bench
capture when it is there; both forms of the kernel; and the time text over the whole int64 range, where
anything outside the proven range must be handed back to orjson. A document's flows written at once
(FlowEncoder.write, in pieces) and spooled records (a streamed analysis') join to the same bytes.
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from tcpfsm import api
from tcpfsm.render import records

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import floodgen  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = sorted((ROOT / "captures").glob("*/*.pcap*"))
BENCH = ROOT / "bench" / "out" / "bench.pcap"
NS = 1_000_000_000
NL = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY
PURE = importlib.import_module("tcpfsm.render._emit")
try:
    COMPILED = importlib.import_module("tcpfsm.render._emit_c")
except ImportError:
    COMPILED = None
FORMS = [pytest.param(PURE, id="pure"),
         pytest.param(COMPILED, id="compiled", marks=pytest.mark.skipif(COMPILED is None, reason="not built"))]


def _assert_same(flows, kernel=None) -> None:
    enc = records.FlowEncoder(kernel)
    for f in flows:
        assert enc(f) == orjson.dumps(records.flow_record(f), option=orjson.OPT_SERIALIZE_NUMPY), f.id
        assert records.flow_end_json(f, enc) == orjson.dumps(records.flow_end_event(f), option=orjson.OPT_SERIALIZE_NUMPY)
        for t in f.transitions:
            assert enc.transition_event(f, t) == orjson.dumps(records.transition_event(f, t), option=NL)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_flow_of_every_capture_is_orjsons_bytes(path):
    _assert_same(api.analyze(str(path)).flows)


@pytest.mark.parametrize("kernel", FORMS)
def test_both_forms_of_the_emitter_write_the_same_bytes(kernel):
    """The plain module is the reference: it runs, and gives orjson's bytes too."""
    for name in ("kernel/concurrent_mixed.pcap", "kernel/lossy_bulk.pcap", "zeek/zeek_flips.pcap",
                 "crafted/ipv6_normal.pcap", "recorded_links/dumpcap_two.pcapng"):   # the last: a non-µs RTT
        _assert_same(api.analyze(str(ROOT / "captures" / name)).flows, kernel)


def test_generated_floods_and_open_connections(tmp_path):
    """bench-like traffic made in a second: half-answered SYNs (SYN_RECEIVED with alternatives, timers) and
    connections that never close."""
    flood, est = tmp_path / "flood.pcap", tmp_path / "open.pcap"
    floodgen.write_flood(str(flood), 3000, answered=0.5)
    floodgen.write_established(str(est), 2000)
    for p in (flood, est):
        an = api.analyze(str(p))
        assert an.flows
        _assert_same(an.flows)


@pytest.mark.skipif(not BENCH.exists(), reason="bench/out/bench.pcap not recorded (make bench)")
def test_bench_capture():
    _assert_same(api.analyze(str(BENCH)).flows)



@pytest.mark.parametrize("kernel", FORMS)
def test_path_records_whatever_order_the_flows_come_in(kernel):
    """The emitter tries a flow's path row just after the last one it found (a document renders flows in
    their PathFacts' order) and asks facts_of when the flow is not there: flows reversed, skipped, repeated,
    and two analyses' flows interleaved (two PathFacts alive at once) each get their own path record."""
    kept = [api.analyze(str(ROOT / "captures" / "kernel" / name)) for name in ("concurrent_mixed.pcap",
                                                                               "lossy_bulk.pcap")]
    a, b = kept[0].flows, kept[1].flows           # (the analyses kept: their PathFacts live as long)
    assert len(a) > 2 and b and sum("path" in records.flow_record(f) for f in a + b) > len(a) // 2
    mixed = a[::-1] + a[::2] + [f for pair in zip(a, b) for f in pair] + a + a[:1] + b + a
    want = [orjson.dumps(records.flow_record(f), option=orjson.OPT_SERIALIZE_NUMPY) for f in mixed]
    enc = records.FlowEncoder(kernel)
    assert [enc(f) for f in mixed] == want
    pieces = []
    records.FlowEncoder(kernel).write(mixed, lambda v: pieces.append(bytes(v)), b"", b"\n")
    assert b"".join(pieces) == b"\n".join(want)


@pytest.mark.parametrize("kernel", FORMS)
def test_alternatives_from_the_endpoints_and_from_the_transitions(kernel):
    """A flow's `alt` is Connection.alt_of's: the endpoint's own when the transitions hold none (read without
    scanning them), else the latest of its transitions' (a one-sided capture's FIN whose ACK was not seen)."""
    alts = set()
    for name in ("matrix/one_sided_c2s__client__20ms.pcap", "matrix/one_sided_s2c__middle__20ms.pcap",
                 "matrix/last_ack_ack_lost__server__20ms__lost-after-tap.pcap", "crafted/last_ack_pile.pcap"):
        flows = api.analyze(str(ROOT / "captures" / name)).flows
        for f in flows:
            c = f.conn
            for ep in (c.client, c.server):
                if c.alt_of(ep) is not None:
                    alts.add("endpoint" if c.alt_of(ep) is ep.alt else "transition")
        _assert_same(flows, kernel)                 # (one encoder per analysis: flow ids repeat across them)
    assert alts == {"endpoint", "transition"}


TIMES = st.one_of(
    st.integers(-2**63 + 1, 2**63 - 1),                                    # anything an int64 holds
    st.integers(-4 * 10**15, 4 * 10**15).map(lambda us: us * 1000),         # µs-exact, the whole proven range
    st.integers(-10**7, 10**7).map(lambda us: us * 1000),                  # near zero: 1e-6 .. 10 s
    st.integers(1_000_000_000, 4_294_967_295).map(lambda s: s * NS),       # whole epoch seconds
    st.integers(1_000_000_000 * 10**6, 4_294_967_296 * 10**6).map(lambda us: us * 1000 + 999),  # not µs-exact
    st.sampled_from([0, 1000, -1000, 9000, 10_000, 99_000, 3_999_999_999_999_999_000, -3_999_999_999_999_999_000,
                     4 * 10**18, -4 * 10**18, 2**63 - 1, -2**63 + 1]),
)


@settings(max_examples=5000, deadline=None)
@given(TIMES)
def test_time_text_is_orjsons_where_proven_and_handed_back_elsewhere(ns):
    for kernel in (PURE, COMPILED) if COMPILED is not None else (PURE,):
        got = kernel.sec_text(ns)
        if -4 * 10**18 < ns < 4 * 10**18 and ns % 1000 == 0:
            assert got == orjson.dumps(records.sec(ns)), ns
        else:
            assert got is None, ns          # the caller's orjson writes it


@pytest.mark.parametrize("kernel", FORMS)
def test_every_microsecond_near_zero_and_at_digit_boundaries(kernel):
    """Where orjson switches spelling (1e-5: "9e-6" / "0.00001") and every width of the fraction."""
    us_values = list(range(-2000, 2000)) + [10**k + d for k in range(16) for d in (-1, 0, 1)]
    for us in us_values:
        ns = us * 1000
        if abs(ns) < 4 * 10**18:
            assert kernel.sec_text(ns) == orjson.dumps(records.sec(ns)), us


@pytest.mark.parametrize("kernel", FORMS)
def test_times_that_share_their_whole_seconds(kernel):
    """The emitter keeps the digits of the last whole number of seconds it wrote (100 or more): runs of
    times within one second, the same second negative, the seconds either side, small ones between, and
    back, each as orjson prints it."""
    for base in (100, 101, 999, 1000, 1_700_000_000, 3_999_999_999):
        us_values = [base * 10**6 + f for f in (0, 1, 9, 10, 120, 500_000, 999_999)]
        us_values += [-(base * 10**6 + 7), base * 10**6 + 3, (base + 1) * 10**6 + 3, base * 10**6 + 250_000,
                      (base - 1) * 10**6 + 999_990, 99 * 10**6 + 5, 5, base * 10**6 + 1, -(base * 10**6 + 1)]
        for us in us_values:
            ns = us * 1000
            if abs(ns) < 4 * 10**18:
                assert kernel.sec_text(ns) == orjson.dumps(records.sec(ns)), us


@pytest.mark.parametrize("kernel", FORMS)
def test_integers_at_every_width(kernel):
    """An integer's text is orjson's at each width's edges, up to the largest int64 (and negative), and for
    every number below 10**4 (each pair of digits of the emitter's table, in both places)."""
    values = [0, 2**63 - 1, -(2**63 - 1)] + [10**k + d for k in range(1, 19) for d in (-1, 0, 1)]
    values += list(range(10**4))
    for v in values + [-v for v in values]:
        assert kernel.int_text(v) == orjson.dumps(v), v


# -- a whole document's flows at once (FlowEncoder.write) and spooled records ---------------------------
@pytest.mark.parametrize("kernel", FORMS)
def test_flows_written_in_pieces_are_the_records_joined(kernel, monkeypatch):
    """FlowEncoder.write hands out views of one reused buffer, each ending at a record's end and cut at
    about output.CHUNK bytes: copied as they come, they are the separators and orjson's records joined,
    whatever the chunk size (a few records a piece, or one piece for all)."""
    from tcpfsm.render import output
    flows = []
    for name in ("kernel/concurrent_mixed.pcap", "zeek/zeek_flips.pcap", "crafted/ipv6_normal.pcap"):
        flows += api.analyze(str(ROOT / "captures" / name)).flows
    want = b"\n  " + b",\n  ".join(orjson.dumps(records.flow_record(f), option=orjson.OPT_SERIALIZE_NUMPY)
                                   for f in flows)
    for chunk in (1, 3000, 1 << 20):
        monkeypatch.setattr(output, "CHUNK", chunk)
        pieces = []
        records.FlowEncoder(kernel).write(flows, lambda b: pieces.append(bytes(b)), b"\n  ", b",\n  ")
        assert b"".join(pieces) == want
        assert all(p.endswith(b"}") for p in pieces)
        if chunk == 1:
            assert len(pieces) == len(flows)
    pieces = []
    records.FlowEncoder(kernel).write([], pieces.append, b"\n  ", b",\n  ")
    assert pieces == []


def _spooled_reference(lines) -> bytes:
    """What write_analysis_json wrote for spooled records before it wrote them a block at a time."""
    out, sep = [], b"\n  "
    for line in lines:
        out.append(sep + line.rstrip(b"\n"))
        sep = b",\n  "
    return b"".join(out)


SPOOLS = [[], [b'{"id":1}'], [b'{"id":%d,"x":"%s"}' % (i, b"y" * (i % 37)) for i in range(500)]]


@pytest.mark.parametrize("lines", SPOOLS, ids=["none", "one", "many"])
def test_spooled_records_are_written_as_they_were_line_by_line(lines, monkeypatch):
    """A spool file (read a block at a time: blocks cut records anywhere) and an iterable of records (the
    Dask merge's, newline-ended or not) give what one write per line gave."""
    import io
    from tcpfsm.render import output
    want = _spooled_reference(lines)
    for chunk in (1, 7, 64, 1 << 20):
        monkeypatch.setattr(output, "CHUNK", chunk)
        for source in (lambda: io.BytesIO(b"".join(r + b"\n" for r in lines)),
                       lambda: iter(lines), lambda: (r + b"\n" for r in lines)):
            got = []
            records._write_spooled(source(), got.append)
            assert b"".join(got) == want, chunk
    got = []                                                    # a file whose last line has no newline
    records._write_spooled(io.BytesIO(b"\n".join(lines)), got.append)
    assert b"".join(got) == want


@pytest.mark.parametrize("kernel", FORMS)
def test_event_lines_written_in_pieces_are_orjsons_events(kernel, monkeypatch):
    """FlowEncoder.write_events (the jsonl document): every event line as orjson prints records.event_stream's
    dicts, in pieces cut at line ends whatever the chunk size."""
    from tcpfsm.render import output
    for name in ("kernel/concurrent_mixed.pcap", "zeek/zeek_flips.pcap", "crafted/ipv6_normal.pcap",
                 "kernel/lossy_bulk.pcap"):
        an = api.analyze(str(ROOT / "captures" / name))
        want = b"".join(orjson.dumps(e, option=NL) for e in records.event_stream(an)[:-1])    # (not stats)
        for chunk in (1, 5000, 1 << 20):
            monkeypatch.setattr(output, "CHUNK", chunk)
            pieces = []
            records.FlowEncoder(kernel).write_events(records._event_keys(an), lambda b: pieces.append(bytes(b)))
            assert b"".join(pieces) == want, (name, chunk)
            assert all(p.endswith(b"\n") for p in pieces)


def test_output_sends_a_chunk_as_it_is_in_order_with_the_buffered_pieces(tmp_path, monkeypatch):
    """Output.write: a piece of CHUNK bytes or more (FlowEncoder.write's) goes straight to write(2) after
    what is buffered, short writes completed; small pieces gather as before."""
    from tcpfsm.render import output
    monkeypatch.setattr(output, "CHUNK", 1000)
    calls = []
    real = output.os.write

    def short(fd, view):                    # at most 300 bytes a call, as a full pipe would take
        calls.append(len(view))
        return real(fd, view[:300])
    monkeypatch.setattr(output.os, "write", short)
    buf = bytearray(b"z" * 5000)
    pieces = [b"a" * 10, b"b" * 2500, memoryview(buf)[:1000], b"c" * 999, b"d" * 5, memoryview(buf)[1000:3500]]
    path = tmp_path / "o"
    with output.Output(str(path)) as out:
        for p in pieces:
            out.write(p)
    assert path.read_bytes() == b"".join(bytes(p) for p in pieces)
    assert max(calls) <= 2500 and len(calls) > 10
