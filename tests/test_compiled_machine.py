"""The compiled endpoint machines (and the tracker's run kernel) equal their plain-Python sources, on every
capture and on generated streams.

`tcpfsm/fsm/machine.py` (the observer model with it) is a Cython pure-Python-mode kernel (tcpfsm/_kernels.py):
the extension (tcpfsm.fsm.machine_c) and the source (tcpfsm.fsm.machine) are loaded side by side in this process
and the tracker is pointed at one or the other. Everything an output can show is compared: every transition
with all its fields, violations, history letters, every endpoint attribute and the observer's estimate.
`make test` runs this file a second time with TCPFSM_PURE=1.
"""
from __future__ import annotations

import importlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tcpfsm._kernels as kernels
import tcpfsm.track.flowtable as flowtable
from tcpfsm import api
from tcpfsm.fsm import get_profile
from test_decoders import capture_files

PURE_RUNS = importlib.import_module("tcpfsm.track._runs")
try:
    COMPILED_RUNS = importlib.import_module("tcpfsm.track._runs_c")
except ImportError:
    COMPILED_RUNS = None
PURE = importlib.import_module("tcpfsm.fsm.machine")
try:
    COMPILED = importlib.import_module("tcpfsm.fsm.machine_c")
except ImportError:
    COMPILED = None
FORMS = (("compiled", COMPILED, COMPILED), ("pure", PURE, PURE))    # (form, machine, observer's module)
_EP = PURE.Endpoint("client")
# every public attribute, plain or a property over compact C fields (compared as the values they read as)
ENDPOINT_FIELDS = sorted(k for k in dir(_EP) if not k.startswith("_") and not callable(getattr(_EP, k)))
TRANSITION_FIELDS = ("ts", "endpoint", "old", "new", "packet", "cause", "reason", "rfc", "seg", "at", "alt",
                     "retracted", "alt_before")


def _need_compiled():
    if COMPILED is None:
        pytest.fail("tcpfsm.fsm.machine_c is not built (make venv / pip install -e . compiles it)")


def test_extensions_are_built_from_this_source():
    _need_compiled()
    for name, mod in (("tcpfsm.fsm.machine", COMPILED),):
        assert mod.__file__.endswith(".so")
        assert mod.__source_sha256__ == kernels._source_sha256(name), "stale: rebuild"
    assert type(COMPILED.Connection).__name__ == "type" and not hasattr(COMPILED.Endpoint("client"), "__dict__")


def _conn_dump(conn) -> dict:
    return {
        "transitions": [tuple(getattr(t, k) for k in TRANSITION_FIELDS) for t in conn.transitions],
        "violations": [(v.ts, v.endpoint, v.kind, v.packet, v.message) for v in conn.violations],
        "endpoints": [{k: getattr(ep, k) for k in ENDPOINT_FIELDS} for ep in (conn.client, conn.server)],
        "history": conn.history, "scaling": conn.scaling, "steady": conn.steady,
        "rst": (conn.rst_by, conn.rst_state, conn.rst_ts, conn.rst_packet),
        "observer": conn.obs.as_dict(),
        "alt": [conn.alt_of(conn.client), conn.alt_of(conn.server)],
        "pending": [conn.pending(conn.client), conn.pending(conn.server)],
        "next": conn.next_deadline(),
    }


def _analysis_dump(path: str, mod, obs, monkeypatch, **kw) -> list:
    with monkeypatch.context() as m:
        m.setattr(flowtable, "Connection", mod.Connection)
        m.setattr(flowtable, "Observer", obs.Observer)
        # (the table's compiled half makes the connections and settles evicted ones: the same machine there)
        m.setattr(flowtable._runs, "Connection", mod.Connection)
        m.setattr(flowtable._runs, "Observer", obs.Observer)
        m.setattr(flowtable._runs, "settle_all", mod.settle_all)
        for name in ("walk_groups", "fire_timers", "settle_all", "TimerHeap"):   # (the walk's form is its machine's)
            m.setattr(flowtable, name, getattr(mod, name))
        an = api.analyze(path, **kw)
    return [(f.id, f.client, f.server, f.role_inferred, _conn_dump(f.conn)) for f in an.flows] + \
        [sorted(repr(x) for x in an.findings)]


@pytest.mark.parametrize("path", [pytest.param(p.values[0], id=p.id) for p in capture_files()])
def test_capture_compiled_machine_equals_pure(path, monkeypatch):
    """Both forms of the machine give the same connections, transitions (every field), violations,
    counters and findings on every capture, with the observer placed automatically and at the server."""
    _need_compiled()
    for point in ("auto", "server"):
        dumps = [_analysis_dump(path, mod, obs, monkeypatch, capture_point=point) for _, mod, obs in FORMS]
        assert dumps[0] == dumps[1]


# ------------------------------------------------------------------ generated segment streams
FLAGS = st.sampled_from([0x02, 0x12, 0x10, 0x18, 0x11, 0x19, 0x04, 0x14, 0x01, 0x03, 0x06, 0x00, 0x13])
SEGMENTS = st.lists(st.tuples(
    st.booleans(),                                   # from the client
    FLAGS,
    st.sampled_from([0, 1, 2, 1000, 1001, 1002, 1500, 0xFFFFFFFF, 0x7FFFFFFF]) | st.integers(0, 2**32 - 1),
    st.sampled_from([0, 1, 1001, 1002, 5001, 5002, 5003, 0xFFFFFFFF]) | st.integers(0, 2**32 - 1),
    st.sampled_from([0, 0, 10, 1448]),              # payload length
    st.sampled_from([0, 512, 65535]),               # window
    st.sampled_from([-1, -1, 0, 7, 14]),            # window scale option
    st.integers(0, 3_000_000_000),                  # gap to the previous segment, ns
    st.sampled_from([0, 1, 1, 1, 2, 5, 40]),        # IP ID step from the sender's previous packet (0: no ID)
), min_size=1, max_size=40)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SEGMENTS, st.sampled_from(["auto", "client", "middle", "server"]), st.sampled_from(["linux", "bsd"]),
       st.integers(0, 400_000_000_000))
def test_random_streams_compiled_machine_equals_pure(segs, point, profile, tail):
    """Random segments (any flags, sequence numbers near the interesting edges, gaps up to seconds) through
    start/feed/expire/settle: both forms end with equal dumps, and raise (or not) alike."""
    _need_compiled()
    prof = get_profile(profile)
    out = []
    for _, mod, obs in FORMS:
        conn = mod.Connection(prof, obs.Observer(point))
        ts = 1_700_000_000 * 10**9
        ids = {True: 0xFFF0, False: 7}                  # (the client's counter wraps)
        try:
            for i, (fc, flags, seq, ack, plen, win, ws, gap, step) in enumerate(segs):
                ts += gap
                ids[fc] = (ids[fc] + step) & 0xFFFF
                ipid = ids[fc] if step else 0
                if i == 0:
                    conn.start(ts, fc, flags)
                conn.expire(ts)
                if conn.steady and not flags & 7:
                    conn.feed_plain(ts, fc, flags, seq, ack, win, plen, 40 + plen, ipid)
                else:
                    conn.feed(ts, i + 1, fc, flags, seq, ack, win, plen, ws, 40 + plen, ipid)
            conn.settle(ts + tail)
            out.append(_conn_dump(conn))
        except Exception as e:                      # noqa: BLE001 -- the two forms must fail alike
            out.append(("raised", type(e).__name__, str(e)))
    assert out[0] == out[1]


# ------------------------------------------------------------------ plain segments a run at a time
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SEGMENTS, st.sampled_from(["auto", "middle"]))
def test_feed_plain_rows_equals_feed_plain_in_both_forms(segs, point):
    """The tracker's way (`feed_plain_rows`: the plain segments of a steady connection from a segment table,
    up to the next SYN, FIN or RST) and the per-segment way (`feed_plain`, `feed`) end alike, compiled and
    uncompiled; the table is read at any row offset and stops at its end bound."""
    import numpy as np
    _need_compiled()
    assert PURE.ROW_COLUMNS == COMPILED.ROW_COLUMNS
    prof = get_profile()
    ts0 = 1_700_000_000 * 10**9
    times = np.cumsum([ts0] + [g for *_, g, _ in segs])[1:]
    ids, ipids = {True: 0xFFF0, False: 7}, []
    for fc, *_, step in segs:
        ids[fc] = (ids[fc] + step) & 0xFFFF
        ipids.append(ids[fc] if step else 0)
    col = {name: i for i, name in enumerate(PURE.ROW_COLUMNS)}
    rows = np.zeros((len(segs) + 2, len(col)), np.int64)     # (a row before and after: offsets and bounds)
    for i, (fc, flags, seq, ack, plen, win, ws, _, _) in enumerate(segs):
        r = rows[i + 1]
        r[col["clock"]], r[col["packet"]], r[col["lo"]], r[col["flags"]] = times[i], i + 1, fc, flags
        r[col["seq"]], r[col["ack"]], r[col["win"]], r[col["plen"]] = seq, ack, win, plen
        r[col["wscale"]], r[col["ip_len"]], r[col["ipid"]] = ws, 40 + plen, ipids[i]
    rows[-1, col["flags"]] = 0x10
    out = []
    for _, mod, obs in FORMS:
        for by_rows in (False, True):
            conn = mod.Connection(prof, obs.Observer(point))
            p, e = 1, len(segs) + 1
            conn.start(int(times[0]), segs[0][0], segs[0][1])
            while p < e:
                fc, flags, seq, ack, plen, win, ws, _, _ = segs[p - 1]
                ts, ipid = int(times[p - 1]), ipids[p - 1]
                if conn.steady and not flags & 7:
                    if by_rows:
                        q = conn.feed_plain_rows(rows, p, e, True)
                        assert q > p and (q == e or segs[q - 1][1] & 7)
                        p = q
                        continue
                    conn.feed_plain(ts, fc, flags, seq, ack, win, plen, 40 + plen, ipid)
                else:
                    conn.expire(ts)
                    conn.feed(ts, p, fc, flags, seq, ack, win, plen, ws, 40 + plen, ipid)
                p += 1
            out.append(_conn_dump(conn))
    assert out[0] == out[1] == out[2] == out[3]


def _group_reference(keys):
    """The definition: groups numbered by first appearance, rows listed group by group in capture order."""
    ids = {}
    grow = [ids.setdefault(k, len(ids)) for k in keys]
    perm = sorted(range(len(keys)), key=lambda i: (grow[i], i))
    starts = [0]
    for g in range(len(ids)):
        starts.append(starts[-1] + grow.count(g))
    return grow, perm, starts


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 6), max_size=60), st.integers(1, 40), st.booleans())
def test_group_rows_compiled_equals_pure_equals_definition(picks, width, tiny_table):
    """Keys drawn from a few distinct ones (repeats, keys that differ in one byte only), any width; a table
    only just longer than the rows as well as the tracker's (2n): collisions and wrap-around probing."""
    import numpy as np
    if COMPILED_RUNS is None:
        pytest.fail("tcpfsm.track._runs_c is not built")
    rng = np.random.default_rng(len(picks) * 41 + width)
    base = rng.integers(0, 256, (7, width), dtype=np.uint8)
    base[1] = base[0]
    base[1, -1] ^= 1                                 # differs from key 0 in its last byte only
    key = np.ascontiguousarray(base[picks]) if picks else np.empty((0, width), np.uint8)
    n = len(picks)
    want = _group_reference([bytes(k) for k in key])
    size = 1 << (n.bit_length() if tiny_table else (2 * n).bit_length())
    for mod in (COMPILED_RUNS, PURE_RUNS):
        grow, first, perm, starts = (np.empty(n, np.int64) for _ in range(4))
        starts = np.empty(n + 1, np.int64)
        G = mod.group_rows(key, grow, first, perm, starts, np.full(size, -1, np.int64))
        assert (grow.tolist(), perm.tolist(), starts[:G + 1].tolist()) == want, mod.__name__
        assert first[:G].tolist() == [want[0].index(g) for g in range(G)]


def test_optional_integer_fields_saturate_alike():
    """An endpoint's optional integers are int64 C fields: values beyond the range (a damaged capture's times
    near int64's end plus a timeout; found by make fuzz) saturate, in both forms, and never read as None."""
    if COMPILED is None:
        pytest.fail("tcpfsm.fsm.machine_c is not built")
    values = (2**70, 2**63, 2**63 - 1, -2**63 + 1, -2**63, -2**70, 5, -5, None)
    got = []
    for mod in (COMPILED, PURE):
        ep = mod.Endpoint("client")
        row = []
        for name in ("deadline", "retry_deadline", "isn", "last_ts", "ack_sent"):
            for v in values:
                setattr(ep, name, v)
                row.append(getattr(ep, name))
        got.append(row)
    assert got[0] == got[1]
    assert got[0][:9] == [2**63 - 1] * 3 + [-2**63 + 2] * 3 + [5, -5, None]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 300), st.integers(0, 2**32 - 1))
def test_gather_rows_is_numpys_gather_in_both_forms(n, seed):
    """The segment table the walk reads (`gather_rows`: row p is batch row perm[p], in ROW_COLUMNS) equals
    numpy's column-by-column gather and cast, compiled and uncompiled, at the columns' extreme values."""
    import numpy as np
    _need_compiled()
    from tcpfsm.capture.batch import ALL_COLUMNS
    rng = np.random.default_rng(seed)
    cols = {}
    for name in ("index", "flags", "seq", "ack", "win", "plen", "wscale", "ip_len", "ipid"):
        dt = ALL_COLUMNS[name]
        info = np.iinfo(dt)
        cols[name] = rng.integers(info.min, info.max, n, dtype=dt, endpoint=True)
    cols["clock"] = rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64, endpoint=True)
    cols["lo"] = rng.integers(0, 1, n, dtype=np.uint8, endpoint=True)
    perm = rng.permutation(n).astype(np.int64)
    want = np.empty((n, len(PURE.ROW_COLUMNS)), np.int64)
    for k, name in enumerate(PURE.ROW_COLUMNS):
        want[:, k] = cols["index" if name == "packet" else name][perm]
    for mod in (COMPILED, PURE):
        got = np.full((n, len(PURE.ROW_COLUMNS)), -7, np.int64)
        mod.gather_rows(got, perm, cols["clock"], cols["index"], cols["lo"], cols["flags"], cols["seq"], cols["ack"],
                        cols["win"], cols["plen"], cols["wscale"], cols["ip_len"], cols["ipid"])
        assert (got == want).all(), mod.__name__


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.just("push"), st.integers(-5, 40)), st.just(("pop", 0)),
                          st.just(("keep", 0))), max_size=300))
def test_timer_heap_is_heapq_over_due_and_push_order(ops):
    """The flow table's timer heap (`TimerHeap`: int64 columns beside the references) pops what heapq pops
    over (due, push number, reference) tuples -- the earliest due first, at one due the first pushed --
    through growth, emptying and `keep_if`, compiled and uncompiled."""
    import heapq
    _need_compiled()
    for mod in (COMPILED, PURE):
        heap, ref, pushed = mod.TimerHeap(), [], 0
        for op, due in ops:
            if op == "push":
                heap.push(due, f"r{pushed}")
                heapq.heappush(ref, (due, pushed, f"r{pushed}"))
                pushed += 1
            elif op == "pop" and ref:
                assert heap.top() == ref[0][0]
                assert heap.pop() == heapq.heappop(ref)[2]
            elif op == "keep":          # drop every third reference by its number, keep the others' order
                heap.keep_if(lambda r: int(r[1:]) % 3 != 0)
                ref = [e for e in ref if e[1] % 3 != 0]
                heapq.heapify(ref)
            assert len(heap) == len(ref), mod.__name__
        while ref:
            assert heap.pop() == heapq.heappop(ref)[2], mod.__name__
        assert len(heap) == 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=400), st.integers(0, 2**32 - 1))
def test_timer_heap_keeps_its_order_through_compaction(dues, seed):
    """`TimerHeap.keep_if` over a full heap (the flow table's compaction: most entries kept, some dropped
    anywhere in it) leaves a heap that pops the kept entries by (due, push order), in both forms."""
    import random
    _need_compiled()
    rnd = random.Random(seed)
    drop = {k for k in range(len(dues)) if rnd.random() < 0.3}
    want = [f"r{k}" for _, k in sorted((d, k) for k, d in enumerate(dues) if k not in drop)]
    for mod in (COMPILED, PURE):
        heap = mod.TimerHeap()
        for k, d in enumerate(dues):
            heap.push(d, f"r{k}")
        heap.keep_if(lambda r: int(r[1:]) not in drop)
        assert len(heap) == len(want)
        assert [heap.pop() for _ in want] == want, mod.__name__
