"""The aggregator's kernel (tcpfsm/detect/_tally.py) counts as the plain containers it replaced did.

The port-scan index of sources probed once (`Singles`) is checked against an OrderedDict doing what the
index did before it (the reference below), and the bulk path for evicted attempts (`tally_attempts`,
which counts a run of attempts into one bucket and one roll-up at a time) against the same attempts counted
one by one through `flood_attempt`. Both forms of the kernel are loaded in this one process (the source by
its own name, the extension by its `_c` name), so each test runs on each.
"""
from __future__ import annotations

import importlib
from pathlib import Path
import pickle
import random
from collections import OrderedDict, defaultdict
from types import SimpleNamespace

import pytest

from tcpfsm.detect.aggregate import _Bucket, _Rollup
from tcpfsm.detect.rules import SEVERITY_RANK, Finding

PURE = importlib.import_module("tcpfsm.detect._tally")
try:
    COMPILED = importlib.import_module("tcpfsm.detect._tally_c")
except ImportError:
    COMPILED = None
KERNELS = [pytest.param(PURE, id="pure"), pytest.param(COMPILED, id="compiled")]


@pytest.fixture(params=KERNELS)
def kernel(request):
    if request.param is None:
        pytest.fail("tcpfsm.detect._tally_c is not built (make venv / pip install -e . compiles it)")
    return request.param


def _reference_probe(scan, scan1, max_singles, max_targets, target, src, first, fid, refused) -> int:
    """The port-scan index as an OrderedDict of first probes, oldest dropped first (what `Singles` replaced)."""
    targets = scan.get(src)
    if targets is None:
        single = scan1.get(src)
        if single is None or single[0] == target:
            if single is None:
                dropped = 0
                if len(scan1) >= max_singles:
                    scan1.popitem(last=False)
                    dropped = 1
                scan1[src] = (target, first, fid, refused)
                return dropped
            return 0
        del scan1[src]
        targets = {single[0]: single[1:]}
        scan[src] = targets
    if target not in targets and len(targets) < max_targets:
        targets[target] = (first, fid, refused)
    return 0


@pytest.mark.parametrize("seed", range(6))
def test_singles_keep_the_first_probe_and_drop_the_oldest_as_an_ordered_dict(kernel, seed):
    """Sources that probe once, twice the same target, or a second target (leaving a hole in the ring),
    past a small bound: the same sources, first probes, order, scans and drop count as the OrderedDict."""
    rnd = random.Random(seed)
    max_singles = rnd.choice([1, 3, 50, 2000])
    srcs = [bytes([i % 256, i // 256]) * 8 for i in range(rnd.choice([5, 300, 3000]))]
    targets = [("10.0.0.%d" % rnd.randrange(4), rnd.choice([22, 80, 443])) for _ in range(6)]
    ref_scan, ref1, scan, singles = {}, OrderedDict(), {}, kernel.Singles()
    ref_dropped = dropped = 0
    for fid in range(5000):
        args = (rnd.choice(targets), rnd.choice(srcs), 10**18 + fid * 7, fid, rnd.random() < 0.3)
        ref_dropped += _reference_probe(ref_scan, ref1, max_singles, 3, *args)
        dropped += kernel.probe(scan, singles, max_singles, 3, *args)
    assert dropped == ref_dropped
    assert scan == ref_scan and list(scan) == list(ref_scan)
    assert singles.items() == list(ref1.items()) and len(singles) == len(ref1)
    again = pickle.loads(pickle.dumps(singles))
    assert again.items() == singles.items()
    while len(ref1):
        ref1.popitem(last=False)
        singles.popleft()
        assert singles.items() == list(ref1.items())


def _attempt(fid, ts, client, server=b"\x0a" * 16, port=80):
    return SimpleNamespace(id=fid, ts=ts, client_raw=client, server_raw=server, server_port=port)


def _state():
    return dict(rollups={}, flood=defaultdict(dict), flood_host={}, flood_sources=defaultdict(set), scan={},
                forgotten={"scan_sources": 0})


def _seed_rollup(st, ts, server, svc):
    """An `unanswered_syn` roll-up for `svc`, begun at `ts` (what the full path leaves)."""
    a = Finding("unanswered_syn", "medium", ts, "first", endpoint="client")
    st["rollups"][("unanswered_syn", server, svc)] = _Rollup("unanswered_syn", "medium", a, 0, ts, 1, [0])


@pytest.mark.parametrize("seed", range(4))
def test_attempts_in_bulk_count_as_one_by_one(kernel, seed):
    """Runs of attempts over seconds and two services, some too young for `unanswered_syn`, some older than
    their roll-up's first (the full path), with small samples: every bucket, roll-up, source set and probe
    as counting each attempt in turn makes them."""
    rnd = random.Random(seed)
    ns = 1_000_000_000
    end, after, sample = 50 * ns, 5 * ns, rnd.choice([2, 7, 1000])
    servers = [(b"\x0a" * 16, 80), (b"\x0b" * 16, 443)]
    attempts, ts = [], 10 * ns
    for fid in range(1, 3000):
        ts += rnd.choice([0, 1000, ns // 3, -ns // 2]) if rnd.random() < 0.9 else rnd.randrange(40 * ns)
        raw, port = servers[0] if rnd.random() < 0.8 else servers[1]
        attempts.append(_attempt(fid, max(ts, 0), rnd.randbytes(16), raw, port))
    text = {servers[0][0]: "10.0.0.1", servers[1][0]: "10.0.0.2"}

    def service_text(raw, port):
        return f"{text[raw]}:{port}"

    def ip_text(raw):
        return text[raw]

    def run(bulk: bool) -> dict:
        st = _state()
        _seed_rollup(st, 20 * ns, "10.0.0.1", "10.0.0.1:80")
        full_calls = []

        def full(a):            # the full path: here, a roll-up started (or moved) by this attempt, and its tallies
            full_calls.append(a.id)
            _seed_rollup(st, min(a.ts, 20 * ns), ip_text(a.server_raw), service_text(a.server_raw, a.server_port))
            one(a)

        def one(a):
            svc = service_text(a.server_raw, a.server_port)
            kernel.flood_attempt(st["flood"], st["flood_host"], st["flood_sources"], ip_text, _Bucket, sample,
                                 50, svc, a.server_raw, a.ts, a.id, a.client_raw, False)
            singles_dropped = kernel.probe(st["scan"], singles, 30, 10, (ip_text(a.server_raw), a.server_port),
                                           a.client_raw, a.ts, a.id, False)
            st["forgotten"]["scan_sources"] += singles_dropped

        singles = kernel.Singles()
        if bulk:
            kernel.tally_attempts(attempts, end, after, st["rollups"], SEVERITY_RANK, full, service_text, ip_text,
                                  st["flood"], st["flood_host"], st["flood_sources"], _Bucket, sample, 50, st["scan"],
                                  singles, st["forgotten"], 30, 10)
        else:
            for a in attempts:          # each in turn: the roll-up by hand, as tally_attempts' doc says
                if end - a.ts >= after:
                    r = st["rollups"].get(("unanswered_syn", ip_text(a.server_raw),
                                           service_text(a.server_raw, a.server_port)))
                    if r is None or a.ts < r.first.ts:
                        full(a)
                        continue
                    if SEVERITY_RANK["low"] < SEVERITY_RANK[r.severity]:
                        r.severity = "low"
                    r.ts_end = max(r.ts_end, a.ts)
                    r.count += 1
                    if len(r.flows) < sample:
                        r.flows.append(a.id)
                one(a)
        st["singles"] = singles.items()
        st["full"] = full_calls
        st["flood"] = {k: {s: (b.count, b.answered, b.lo, b.hi, list(b.flows)) for s, b in v.items()}
                       for k, v in st["flood"].items()}
        st["rollups"] = {k: (r.severity, r.ts_end, r.count, r.flows, r.first.ts) for k, r in st["rollups"].items()}
        return st

    one_by_one, bulk = run(False), run(True)
    assert bulk == one_by_one
    assert one_by_one["full"] and any(len(b) > 1 for v in one_by_one["flood"].values() for b in v.values())


CAPTURES = sorted((Path(__file__).resolve().parent.parent / "captures" / "crafted").glob("*.pcap"))


@pytest.mark.parametrize("path", CAPTURES + [None], ids=[p.stem for p in CAPTURES] + ["bench-like"])
def test_the_newest_index_in_bulk_learns_what_index_learns_flow_by_flow(kernel, path, tmp_path, monkeypatch):
    """`index_newest` (the reconnect rule's index at the end, compiled) and the flood and scan tallies of the
    flows it hands back learn what `Aggregator._index` learns flow by flow: the same newest connections, in
    the same order, the same pairs forgotten past the bound, the same floods and scans."""
    import tcpfsm
    import tcpfsm.detect.aggregate as aggregate
    from tcpfsm.detect.rules import screen
    monkeypatch.setattr(aggregate, "_tally", kernel)
    if path is None:                    # (many clients reconnecting, refused and unanswered: a small bound)
        from floodgen import write_flood
        path = tmp_path / "flood.pcap"
        write_flood(str(path), 3000, seconds=3.0, answered=0.5)
        monkeypatch.setattr(aggregate, "MAX_NEWEST", 1000)
    an = tcpfsm.analyze(str(path))
    flows, end = list(an.flows), an.end
    bulk, one = aggregate.Aggregator(an.thresholds), aggregate.Aggregator(an.thresholds)
    bulk._judge(flows, end, index=True)
    for f, fl in zip(flows, screen(flows, end, an.thresholds)):
        one._index(f, True, None, fl & aggregate.CLIENT_ESTABLISHED != 0)
    assert list(bulk.newest.items()) == list(one.newest.items())
    assert bulk.forgotten == one.forgotten
    assert bulk.scan == one.scan and bulk.scan1.items() == one.scan1.items()
    assert {k: {s: (b.count, b.answered, b.lo, b.hi, list(b.flows)) for s, b in v.items()}
            for k, v in bulk.flood.items()} == \
        {k: {s: (b.count, b.answered, b.lo, b.hi, list(b.flows)) for s, b in v.items()} for k, v in one.flood.items()}
    assert bulk.flood_sources == one.flood_sources
    if path.name == "flood.pcap":
        assert one.forgotten["reconnect_pairs"] > 0 and one.flood and len(one.scan1)


def _reference_coarse(ep, role: str, transitions: list) -> int:
    """An endpoint's coarse Zeek state as tcpfsm/detect/zeek.py read it before the kernel did, one endpoint
    and one walk at a time."""
    from tcpfsm.detect.zeek import _DONE
    from tcpfsm.zeek.tracker import CLOSED, ESTABLISHED, INACTIVE, PARTIAL, RESET, SYN_ACK_SENT, SYN_SENT
    if ep.rsts:
        return RESET
    if ep.fins:
        return CLOSED
    for t in transitions:
        if t.endpoint == role and t.new in _DONE and not t.cause.startswith("inferred:midstream"):
            return ESTABLISHED
    if ep.synacks:
        return SYN_ACK_SENT
    if ep.syns:
        return SYN_SENT
    return PARTIAL if ep.packets else INACTIVE


KERNEL_CAPTURES = sorted((Path(__file__).resolve().parent.parent / "captures" / "kernel").glob("*.pcap"))


def test_coarse_zeek_states_are_read_as_endpoint_by_endpoint(kernel):
    """`zeek_coarse` (both endpoints, one walk of the transitions at most) gives each endpoint's coarse state
    as reading them one at a time does, on every crafted and kernel capture's connections."""
    import tcpfsm
    from tcpfsm.detect.zeek import _CODES, _DONE_MASK
    from tcpfsm.fsm import entered_sides
    seen = set()
    picked_up = [Path(__file__).resolve().parent.parent / "captures" / name       # (established midstream only)
                 for name in ("links/ipfrag.pcap", "zeek/zeek_flips.pcap")]
    for path in CAPTURES + KERNEL_CAPTURES + picked_up:
        for f in tcpfsm.analyze(str(path)).flows:
            conn = f.conn
            want = (_reference_coarse(conn.client, "client", conn.transitions),
                    _reference_coarse(conn.server, "server", conn.transitions))
            both = kernel.zeek_coarse(conn, _DONE_MASK, _CODES, entered_sides)
            assert (both >> 4, both & 15) == want, (path.name, f.id)
            seen.add(want)
    assert len(seen) >= 8


@pytest.mark.parametrize("seed", range(5))
def test_merged_scan_indexes_are_one_process_index(seed):
    """`Aggregator.merge` (tcpfsm.distributed's parts) joins the port-scan indexes -- the sources probed once
    (`Singles`) and the scanners -- into what one aggregator seeing every probe in flow order holds."""
    from tcpfsm.detect.aggregate import Aggregator
    from tcpfsm.detect.rules import Thresholds
    rnd = random.Random(seed)
    mapped = bytes(10) + b"\xff\xff"
    servers = [mapped + bytes([10, 0, 0, i]) for i in range(1, 5)]
    sources = [mapped + bytes([192, 168, i // 256, i % 256]) for i in range(300)]
    whole, a, b = Aggregator(Thresholds()), Aggregator(Thresholds()), Aggregator(Thresholds())
    for fid in range(1, 2000):
        probe = (rnd.choice(servers), rnd.choice([22, 80]), rnd.choice(sources), 10**18 + fid, fid, rnd.random() < .5)
        whole._probe(*probe)
        (a if rnd.random() < 0.5 else b)._probe(*probe)
    m = a.merge(b)
    assert list(m.scan.items()) == list(whole.scan.items())
    assert m.scan1.items() == whole.scan1.items() and len(m.scan1) and len(m.scan)
    assert m.forgotten == whole.forgotten
