"""The path stage computed column-wise (tcpfsm/path/flows.py, tcpfsm/detect/path_rules.py) against the per-flow
forms it replaced, kept here as references: on every capture under captures/, with the default thresholds and
with thresholds low enough for every path rule to fire, the same findings, anomalies, conversation -> flow
map and RTT statistics; and the vectorised helpers (sorting by flow, Python's rounding) on edge values."""
from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

import tcpfsm
from tcpfsm.detect import path_rules as pr
from tcpfsm.detect.rules import _secs, rank
from tcpfsm.path import flows as pf
from tcpfsm.path.segments import CS

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = sorted(p for p in (ROOT / "captures").rglob("*.pcap*") if p.is_file())
NS = 1_000_000_000
# every path rule fires somewhere with these
LOW = dict(slow_handshake=0.0, slow_connect=0.001, zero_window_stall=0.0, keepalive_idle=0.01, lossy_path_rate=0.0,
           lossy_path_min_count=1, listen_queue_overflow_count=1, icmp_unreachable_count=1)


# -- the per-flow references ----------------------------------------------------------------------------
def ref_path_findings(an) -> None:
    facts, th = an.path, an.thresholds
    flows = an.flows
    cs = facts.cs
    per_flow = []
    for row, f in enumerate(flows):
        c = int(facts.conv_of_flow[row])
        if c < 0:
            continue
        r = cs[c]
        if r[CS["first_rtt"]] and r[CS["first_syn_ts"]]:
            done = int(r[CS["mru_syn"]]) + int(r[CS["first_rtt"]])
            lat = done - int(r[CS["first_syn_ts"]])
            if lat > th.slow_handshake * NS:
                syns = int(facts.syns["client"][row])
                sev = "medium" if lat >= th.slow_connect * NS else "low"
                retries = f", {syns - 1} SYN retransmission(s)" if syns > 1 else ""
                per_flow.append((row, pr.Finding(
                    "slow_handshake", sev, int(r[CS["first_syn_ts"]]),
                    f"connect to {f.server} took {_secs(lat)} (handshake RTT {_secs(int(r[CS['first_rtt']]))}{retries})",
                    ts_end=done, endpoint="client", packets=[f.first_packet, int(r[CS["rtt_packet"]])])))
        for role in ("client", "server"):
            count, ns = int(facts.zw[role][0][row]), int(facts.zw[role][1][row])
            if count and ns >= th.zero_window_stall * NS:
                first = int(facts.first_zw[role][row])
                sev = "medium" if ns < 10 * th.zero_window_stall * NS else "high"
                per_flow.append((row, pr.Finding(
                    "zero_window_stall", sev, f.first_ts,
                    f"{f.client if role == 'client' else f.server} advertised a zero window for {_secs(ns)} "
                    f"({count} segment(s)): its application stopped reading, not the network",
                    endpoint=role, packets=[first])))
        gap = int(r[CS["max_gap"]])
        if gap >= th.keepalive_idle * NS and not (facts.keepalives["client"][row] or facts.keepalives["server"][row]) \
                and pr._was_established(f):
            per_flow.append((row, pr.Finding(
                "keepalive_absent", "low", f.first_ts,
                f"established and silent for {_secs(gap)} with no keep-alives: a vanished peer would go unnoticed",
                packets=[int(r[CS["max_gap_packet"]])])))
    by_row = defaultdict(list)
    for row, a in per_flow:
        by_row[row].append(a)
    for row, found in by_row.items():
        flows[row].anomalies = list(flows[row].anomalies) + found
    pmtu = pr._pmtu_rows(an)
    over = {r: p for r, p in ref_overflowed(an).items() if r not in pmtu}
    an.findings = rank(list(an.findings) + pr._rollups(flows, per_flow) + ref_lossy(an, set(over) | pmtu)
                       + pr._overflow(an, over) + pr._icmp_unreachable(an))


def ref_lossy(an, skip):
    facts, th = an.path, an.thresholds
    pairs = {}
    for row, f in enumerate(an.flows):
        if row in skip or any(a.kind in pr.EXPLAINED for a in f.anomalies):
            continue
        pairs.setdefault((f.client_ip, f.server_ip), []).append(row)
    out = []
    for (cip, sip), rows in pairs.items():
        idx = np.asarray(rows)
        by = {r: int(facts.data[r][1][idx].sum()) for r in ("client", "server")}
        retx = by["client"] + by["server"]
        segs = int(facts.data["client"][0][idx].sum() + facts.data["server"][0][idx].sum())
        if not segs or retx < th.lossy_path_min_count:
            continue
        rate = retx / segs
        if rate <= th.lossy_path_rate:
            continue
        sev = "high" if rate > 5 * th.lossy_path_rate else "medium"
        fl = [an.flows[r] for r in rows]
        out.append(pr.Finding(
            "lossy_path", sev, min(f.first_ts for f in fl),
            f"{cip} <-> {sip}: {rate:.1%} of {segs} data segments retransmitted ({by['client']} by the client side, "
            f"{by['server']} by the server side) over {len(fl)} connection(s)",
            ts_end=max(f.last_ts for f in fl), count=retx, flows=sorted(f.id for f in fl)[:pr.SAMPLE],
            host=cip, service=sip))
    return out


def ref_overflowed(an):
    facts = an.path
    out = {}
    for row, f in enumerate(an.flows):
        c = int(facts.conv_of_flow[row])
        if c < 0 or not facts.cs[c, CS["first_rtt"]]:
            continue
        if facts.cs[c, CS["synack_after"]] > 0:
            out[row] = int(facts.cs[c, CS["synack_after_packet"]])
        elif facts.retx["client"][1][row] > 0 and facts.syns["server"][row] > 0 \
                and facts.segments["server"][row] == facts.syns["server"][row]:
            out[row] = int(facts.cs[c, CS["rtt_packet"]])
    return out


def ref_conv_flows(sa, cs, flows):
    """Each conversation's flow by the flows' keys in a dict of (first packet, row) lists."""
    by_key = defaultdict(list)
    for row, f in enumerate(flows):
        by_key[pf.flow_key(f)].append((f.first_packet, row))
    out = np.full(len(cs), -1, np.int64)
    keys = sa.keys().tolist()
    for c in range(len(cs)):
        lst = sorted(by_key.get(keys[int(cs[c, CS["key"]])], []))
        if lst:
            before = [row for first, row in lst if first <= int(cs[c, CS["first_packet"]])]
            out[c] = before[-1] if before else lst[0][1]
    return out


def ref_rtt(facts, sa, nf):
    """(n, min, max, median, p95, jitter) per flow, flow by flow with numpy's own statistics."""
    conv, _lo, rtt, packet = sa.rtt_samples()
    flow = facts.conv_flow[conv] if len(conv) else np.zeros(0, np.int64)
    out = []
    for row in range(nf):
        m = flow == row
        v = rtt[m]
        if not len(v):
            out.append((0, 0, 0, 0.0, 0.0, 0.0))
            continue
        t = v[np.argsort(packet[m], kind="stable")].astype(np.float64)
        jit = float(np.abs(np.diff(t)).sum()) / max(len(v) - 1, 1)
        out.append((len(v), int(v.min()), int(v.max()), float(np.percentile(v, 50)), float(np.percentile(v, 95)), jit))
    return out


# -- the comparisons ---------------------------------------------------------------------------------------
def _analyses(path, th, monkeypatch):
    """The analysis of `path` before its path findings, and a copy of each flow's anomalies then."""
    monkeypatch.setattr(pr, "path_findings", lambda an: None)
    an = tcpfsm.analyze(str(path), thresholds=th)
    monkeypatch.undo()
    return an


@pytest.mark.parametrize("th", [None, LOW], ids=["default", "low"])
def test_path_rules_equal_the_per_flow_rules_on_every_capture(th, monkeypatch):
    fired = set()
    for path in CAPTURES:
        an = _analyses(path, th, monkeypatch)
        if getattr(an, "path", None) is None:
            continue
        before = ([f.anomalies for f in an.flows], list(an.findings))
        pr.path_findings(an)
        got = ([repr(f.anomalies) for f in an.flows], repr(an.findings))
        for f, a in zip(an.flows, before[0]):
            f.anomalies = a
        an.findings = list(before[1])
        ref_path_findings(an)
        want = ([repr(f.anomalies) for f in an.flows], repr(an.findings))
        assert got == want, path
        assert pr.overflowed(an) == ref_overflowed(an), path
        fired.update(a.kind for a in an.findings)
    if th is LOW:
        assert {"lossy_path", "slow_handshake", "zero_window_stall", "keepalive_absent",
                "listen_queue_overflow"} <= fired


def test_conv_flows_and_rtt_statistics_equal_the_references_on_every_capture(monkeypatch):
    from tcpfsm import path as path_pkg
    seen = {}
    orig = path_pkg.attach

    def attach(an, seqan):
        seen["sa"] = seqan
        orig(an, seqan)

    monkeypatch.setattr(path_pkg, "attach", attach)
    for path in CAPTURES:
        seen.clear()
        an = tcpfsm.analyze(str(path))
        if "sa" not in seen:
            continue
        sa, facts = seen["sa"], an.path
        cs, _ = sa.conv_state()
        assert np.array_equal(facts.conv_flow, ref_conv_flows(sa, cs, an.flows)), path
        for row, (n, lo, hi, med, p95, jit) in enumerate(ref_rtt(facts, sa, len(an.flows))):
            assert int(facts.rtt_n[row]) == n, path
            if n:
                assert (int(facts.rtt_min[row]), int(facts.rtt_max[row])) == (lo, hi), path
                assert facts.rtt_med[row] == pytest.approx(med, rel=1e-12), path
                assert facts.rtt_p95[row] == pytest.approx(p95, rel=1e-12), path
                assert facts.rtt_jitter[row] == pytest.approx(jit, rel=1e-9), path


def test_round6_is_pythons_round():
    rng = random.Random(3)
    ns = [rng.randrange(0, 10 ** 12) for _ in range(20000)] + [k * 500 for k in range(1, 20001)] + \
        [k * 1000 + 500 for k in range(20000)] + [2 ** 62, 2 ** 53 + 1, 0]
    vals = [v / 2 for v in ns] + [v + 0.25 for v in ns[:5000]]
    x = np.array(vals, np.float64) / NS
    got = pf.round6(x).tolist()
    assert got == [round(v / NS, 6) for v in vals]
    assert pf.round6(np.array([1e300, float("inf")])).tolist() == [round(1e300, 6), float("inf")]
    # exact halves (odd multiples of 1/128 are 6-decimal halves: to even), their neighbours, negatives, zeros'
    # signs, large values near halves (the exact product decides there)
    k = np.arange(-20000, 20000, dtype=np.float64)
    r = np.random.default_rng(5)
    big = r.integers(10 ** 9, 4 * 10 ** 15, 20000).astype(np.float64)
    for x in (k / 128 / 1e4, (k + 0.5) / 1e6, np.nextafter((k + 0.5) / 1e6, 0), np.nextafter((k + 0.5) / 1e6, 1),
              (big + 0.5) / 1e6, -np.nextafter((big + 0.5) / 1e6, 0), np.array([-0.0, -1e-7, -5e-7, 4.6e9])):
        got = pf.round6(x).tolist()
        want = [round(v, 6) for v in x.tolist()]
        assert got == want and [str(v) for v in got] == [str(v) for v in want]


def test_key_table_under_the_cap_on_conversations():
    """The kernel's key table (tcpfsm/path/_seqan.py: intern_keys) through its growth and past the cap: the
    conversations kept are the first ones of the uncapped analysis, with the same analysis; the others'
    segments are skipped, and their keys get no id of their own."""
    from tcpfsm.capture.reader import open_capture
    from tcpfsm.path.segments import SequenceAnalysis
    path = ROOT / "captures" / "kernel" / "concurrent_mixed.pcap"
    batches = list(open_capture(str(path)).batches(100))

    def run(cap):
        sa = SequenceAnalysis(keep_rows=True, max_convs=cap)
        for b in batches:
            sa.feed_batch(b)
        return sa, sa.rows()

    full, rows = run(None)
    assert full.nkeys == len(set(full.keys().tolist())) == full.nconv > 1000 // 10
    for cap in (1, 50, full.nconv - 1):
        sa, r = run(cap)
        kept = rows.conv < cap
        assert np.array_equal(r.conv, np.where(kept, rows.conv, -1))
        assert np.array_equal(r.bits[kept], rows.bits[kept])
        assert sa.skipped == int((~kept).sum())
        assert sa.nkeys < full.nkeys if cap == 1 else sa.nkeys <= full.nkeys   # (stored while not full)
    assert np.array_equal(full.key_ids(full.keys()), np.arange(full.nkeys))
    # one batch, then all the others at once: the table is rebuilt larger with the keys it holds
    from tcpfsm.capture.batch import Batch
    rest = Batch({k: np.concatenate([b.cols[k] for b in batches[1:]]) for k in batches[0].cols})
    sa = SequenceAnalysis(keep_rows=True)
    sa.feed_batch(batches[0])
    small = len(sa._table)
    sa.feed_batch(rest)
    assert len(sa._table) > small and np.array_equal(sa.keys(), full.keys())
    assert np.array_equal(sa.rows().conv, rows.conv) and np.array_equal(sa.rows().bits, rows.bits)
    assert full.key_ids(np.zeros(2, "V36")).tolist() == [-1, -1]


def test_secs_column_wise_is_the_per_value_rounding():
    """flows._secs (the records' seconds) against the per-value form it replaced, huge and negative included."""
    def one(v):
        if v < 0:
            return None
        us, sub = divmod(v, 1000)
        return us / 1e6 if not sub else round(v / NS, 6)

    rng = random.Random(5)
    ns = [rng.randrange(-5, 10 ** 13) for _ in range(20000)] + [k * 500 for k in range(20000)] + \
        [(1 << 53) + 1, (1 << 53) - 1, (1 << 62) + 12345, (1 << 63) - 1, 4 * 10 ** 18 + 1000, -1]
    assert pf._secs(np.array(ns, np.int64)) == [one(v) for v in ns]


def _kernel_forms():
    import importlib
    kernels = [importlib.import_module("tcpfsm.path._seqan")]
    try:
        kernels.append(importlib.import_module("tcpfsm.path._seqan_c"))
    except ImportError:
        pass
    return kernels


def _jitter_by_numpy(flow, rtt, nf):
    """The numpy form the kernel's jitter sums replaced: samples grouped by flow (stably), differences of the
    floats, added by np.add.at."""
    o = np.argsort(flow, kind="stable")
    f2, d = flow[o], np.abs(np.diff(rtt[o].astype(np.float64)))
    same = f2[1:] == f2[:-1]
    tot = np.zeros(nf)
    np.add.at(tot, f2[1:][same], d[same])
    return np.bincount(flow, minlength=nf).astype(np.int64), tot


def test_rtt_by_flow_counts_jitter_sums_and_sorted_runs_in_both_kernel_forms():
    """segments.rtt_by_flow against numpy: the counts, the jitter sums bit for bit (also where the floats round:
    values above 2**53, where the order of the additions shows), and the samples sorted by (flow, value) as
    a lexsort gives them -- runs the kernel sorts and runs longer than SORT_RUN numpy sorts; samples of
    conversations without a flow left out, samples out of packet order put in it first."""
    from tcpfsm.path import segments as seg
    rng = np.random.default_rng(3)
    cases = [(0, 1, 10), (1, 3, 10), (5000, 7, 10 ** 12), (20000, 3000, 10 ** 12), (5000, 1000, 50),
             (3000, 20, 1 << 62)]
    for kernel in _kernel_forms():
        for n, nf, high in cases:
            for shuffled in (False, True):
                nconv = nf + 5
                conv_flow = np.concatenate([rng.permutation(nf), np.full(5, -1)])[rng.permutation(nconv)]
                conv = rng.integers(0, nconv, n)
                rtt = rng.integers(0, high, n)
                if high > 1 << 53:
                    rtt[::7] = rng.integers(2 ** 53, 2 ** 62, len(rtt[::7]))
                packet = np.arange(n) * 3
                if shuffled:
                    o = rng.permutation(n)
                    conv, rtt, packet = conv[o], rtt[o], packet[o]
                orig = seg._k
                seg._k = kernel
                try:
                    count, tot, ro = seg.rtt_by_flow(conv, rtt, packet, conv_flow, nf)
                finally:
                    seg._k = orig
                t = np.argsort(packet, kind="stable")
                flow, v = conv_flow[conv[t]], rtt[t]
                flow, v = flow[flow >= 0], v[flow >= 0]
                want_count, want_tot = _jitter_by_numpy(flow, v, nf)
                assert np.array_equal(count, want_count) and count.dtype == np.int64
                assert tot.tobytes() == want_tot.tobytes()
                assert np.array_equal(ro, v[np.lexsort((v, flow))])
        got = seg.rtt_by_flow(np.array([0, 1, 0]), np.array([5, 9, 2]), np.array([1, 2, 3]), np.array([0, 1]), 2)
        assert got[2].tolist() == [2, 5, 9]


def _rtt_by_sorts(conv, rtt, packet, conv_flow, nf):
    """PathFacts._rtt as it was before the kernel's pass over the samples: sorts by packet and by flow, np.add.at."""
    flow = conv_flow[conv]
    keep = flow >= 0
    flow, rtt, packet = flow[keep], rtt[keep], packet[keep]
    n_all = np.bincount(flow, minlength=nf).astype(np.int64)
    out = {k: np.zeros(nf, np.int64) for k in ("min", "max")} | {k: np.zeros(nf) for k in ("med", "p95", "mean", "jit")}
    out["n"] = n_all
    if not len(flow):
        return out
    ro = rtt[np.lexsort((rtt, flow))]
    ids = np.flatnonzero(n_all)
    n = n_all[ids]
    starts = np.cumsum(n) - n
    out["min"][ids], out["max"][ids] = ro[starts], ro[starts + n - 1]
    rs = ro.astype(np.float64)
    for k, q in (("med", 0.5), ("p95", 0.95)):
        pos = starts + (n - 1) * q
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, starts + n - 1)
        out[k][ids] = rs[lo] + (rs[hi] - rs[lo]) * (pos - lo)
    out["mean"][ids] = np.add.reduceat(rs, starts) / n
    o2 = np.argsort(packet, kind="stable")
    o2 = o2[np.argsort(flow[o2], kind="stable")]
    f2, r2 = flow[o2], rtt[o2].astype(np.float64)
    d = np.abs(np.diff(r2))
    same = f2[1:] == f2[:-1]
    tot = np.zeros(nf)
    np.add.at(tot, f2[1:][same], d[same])
    out["jit"] = tot / np.maximum(n_all - 1, 1)
    return out


@pytest.mark.parametrize("in_packet_order", [True, False], ids=["capture order", "shuffled"])
def test_rtt_statistics_bit_for_bit_as_the_sort_based_form(in_packet_order):
    """PathFacts._rtt (the kernel's pass over the samples) against the form it replaced, on samples in packet order (as the
    analysis feeds them) and shuffled, some conversations without a flow: every statistic the same bits."""
    rng = np.random.default_rng(8)
    nconv, nf, n = 400, 300, 30000
    conv_flow = rng.integers(-1, nf, nconv)
    conv = rng.integers(0, nconv, n)
    rtt = rng.integers(1, 10 ** 9, n)
    rtt[::11] = rng.integers(2 ** 53, 2 ** 55, len(rtt[::11]))
    packet = np.sort(rng.choice(10 ** 7, n, replace=False))
    if not in_packet_order:
        o = rng.permutation(n)
        conv, rtt, packet = conv[o], rtt[o], packet[o]

    class Samples:
        def rtt_samples(self):
            return conv, np.zeros(n, bool), rtt, packet

    facts = pf.PathFacts.__new__(pf.PathFacts)
    facts.conv_flow = conv_flow
    facts._rtt(Samples(), nf)
    want = _rtt_by_sorts(conv, rtt, packet, conv_flow, nf)
    for k, got in (("n", facts.rtt_n), ("min", facts.rtt_min), ("max", facts.rtt_max), ("med", facts.rtt_med),
                   ("p95", facts.rtt_p95), ("mean", facts.rtt_mean), ("jit", facts.rtt_jitter)):
        assert got.dtype == want[k].dtype and got.tobytes() == want[k].tobytes(), k


def test_per_flow_reductions_by_assignment_or_ufunc_at():
    """flows._PerFlow: a flow's conversations summed / their minimum, by plain assignment when each flow has at
    most one conversation, by np.add.at / np.minimum.at when one has more: the same as ufunc.at either way."""
    rng = np.random.default_rng(4)
    nf = 50
    big = np.iinfo(np.int64).max
    for fl, one_each in ((rng.permutation(nf)[:30], True), (rng.integers(0, nf, 80), False), (np.zeros(0, np.int64), True)):
        v = rng.integers(-10 ** 12, 10 ** 12, len(fl))
        into = pf._PerFlow(fl, nf)
        assert into.one_each is one_each
        want = np.zeros(nf, np.int64)
        np.add.at(want, fl, v)
        assert np.array_equal(into.sum(v), want)
        want = np.full(nf, big, np.int64)
        np.minimum.at(want, fl, v)
        assert np.array_equal(into.min(v), want)


def test_sum_by_flow_is_np_add_at_per_column_in_both_kernel_forms():
    """segments.sum_by_flow (the counters of PathFacts) against np.add.at of each column over the rows, flows
    with several rows and none included."""
    from tcpfsm.path import segments as seg
    rng = np.random.default_rng(6)
    ds = rng.integers(-10 ** 9, 10 ** 12, (400, len(seg.DS)))
    for kernel in _kernel_forms():
        for n, nf in ((0, 5), (150, 200), (300, 40)):
            rows, fl = rng.integers(0, len(ds), n), rng.integers(0, nf, n)
            cols = [seg.DS[c] for c in pf._COUNTED]
            orig = seg._k
            seg._k = kernel
            try:
                got = seg.sum_by_flow(ds, rows, fl, cols, nf)
            finally:
                seg._k = orig
            for j, col in enumerate(cols):
                want = np.zeros(nf, np.int64)
                np.add.at(want, fl, ds[rows, col])
                assert np.array_equal(got[j], want), (n, j)


def test_flow_keys_and_pair_codes_column_wise():
    """flows.flow_keys against flow_key per flow, and the pair codes against numbering the distinct (client,
    server) address pairs by their first flow (np.unique's first indices), on IPv4 and IPv6 flows of both
    orientations."""
    orientations = set()
    for name in ("kernel/concurrent_mixed.pcap", "kernel/ipv6_close.pcap", "crafted/tw_reuse.pcap",
                 "crafted/windows_tw.pcap"):
        flows = tcpfsm.analyze(str(ROOT / "captures" / name)).flows
        orientations |= {f.client_is_lo for f in flows}
        fc = pf.flow_columns(flows)
        assert pf.flow_keys(fc).tolist() == [pf.flow_key(f) for f in flows], name
        pairs = [f.client_raw + f.server_raw for f in flows]
        _, first, code = np.unique(np.array(pairs, "S32"), return_index=True, return_inverse=True)
        rank = np.empty(len(first), np.int64)
        rank[np.argsort(first)] = np.arange(len(first))
        assert np.array_equal(pf._pair_codes(fc), rank[code.reshape(-1)]), name
    assert orientations == {True, False}
    a, b, c, x, y = (bytes([k]) * 16 for k in range(1, 6))
    fc = {"id": np.arange(6), "client_raw": np.array([a, a, b, a, c, b], "S16"),
          "server_raw": np.array([x, y, x, x, y, x], "S16")}
    assert pf._pair_codes(fc).tolist() == [0, 1, 2, 0, 3, 2]
    assert len(pf.flow_keys(pf.flow_columns([]))) == 0 and len(pf._pair_codes(pf.flow_columns([]))) == 0


def test_conv_flows_by_the_4_tuple_when_no_4_tuple_has_two_flows():
    """flows._conv_flows maps a conversation straight to its 4-tuple's flow when each 4-tuple has one flow: what
    the sort of flows and conversations together (`_conv_flows_sorted`, for any flows) gives there too."""
    from tcpfsm import path as path_pkg
    seen = {}
    orig = path_pkg.attach

    def attach(an, seqan):
        seen["sa"] = seqan
        orig(an, seqan)

    path_pkg.attach = attach
    try:
        direct = 0
        for name in ("kernel/concurrent_mixed.pcap", "path/loss_bulk.pcap", "crafted/tw_reuse.pcap"):
            an = tcpfsm.analyze(str(ROOT / "captures" / name))
            sa = seen["sa"]
            cs, _ = sa.conv_state()
            fc = pf.flow_columns(an.flows)
            fkid = sa.key_ids(pf.flow_keys(fc))
            by_sort = pf._conv_flows_sorted(fkid, fc["first_packet"], cs[:, CS["key"]], cs[:, CS["first_packet"]])
            assert np.array_equal(pf._conv_flows(sa, cs, fc, an.flows), by_sort), name
            direct += len(np.unique(fkid[fkid >= 0])) == int((fkid >= 0).sum())
        assert direct == 2                      # (tw_reuse has a 4-tuple of two flows: the sort decides there)
    finally:
        path_pkg.attach = orig


def test_ttl_max_from_the_kernel_is_the_highest_ttl_per_direction():
    """The kernel keeps each conversation direction's highest TTL / hop limit (both forms), as a maximum over
    the rows of that direction computed afterwards says."""
    import importlib
    from tcpfsm.capture.reader import open_capture
    from tcpfsm.path import segments as seg
    kernels = [importlib.import_module("tcpfsm.path._seqan")]
    try:
        kernels.append(importlib.import_module("tcpfsm.path._seqan_c"))
    except ImportError:
        pass
    for name in ("path/loss_bulk.pcap", "kernel/concurrent_mixed.pcap", "kernel/ipv6_close.pcap"):
        batches = list(open_capture(str(ROOT / "captures" / name)).batches(500))
        ttl = np.concatenate([b.cols["ttl"] for b in batches])
        for kernel in kernels:
            orig = seg._k
            seg._k = kernel
            try:
                sa = seg.SequenceAnalysis(keep_rows=True, max_convs=5)
                for b in batches:
                    sa.feed_batch(b)
            finally:
                seg._k = orig
            r = sa.rows()
            want = np.full(len(sa.ttl_max), -1, np.int16)
            kept = r.conv >= 0
            np.maximum.at(want, 2 * r.conv[kept] + r.lo[kept], ttl[kept].astype(np.int16))
            assert np.array_equal(sa.ttl_max, want), name
            assert (want[:2 * sa.nconv] >= 0).any()


def test_intern_keys_in_both_kernel_forms_on_keys_one_byte_apart():
    """intern_keys (the compiled form compares whole keys with memcmp) against a dict numbering the keys in
    order of first appearance: rows repeating the row before, and keys that differ from the one before, or
    from one stored in the same table, in a single byte -- any of the 36, the last word's too -- and thousands
    alike but for their last word; in two calls (the ids go on), then looked up without growing (`missing`
    for an unseen key)."""
    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, (40, 36), dtype=np.uint8)
    rows = []
    for b in base:
        for pos in range(36):
            for _ in range(2):                              # (each key twice in a row: the row-before path)
                k = b.copy()
                k[pos] ^= 1 << int(rng.integers(0, 8))
                rows.append(k)
            rows.append(b)
    same32 = np.repeat(base[:1], 3000, axis=0)     # keys alike but for their last word: their probes meet
    same32[:, 32:] = rng.choice(1 << 30, 3000, replace=False).astype("<u4").view(np.uint8).reshape(3000, 4)
    rows.extend(same32)
    keys = np.ascontiguousarray(np.array(rows, np.uint8)).view("V36").ravel()
    want, seen = [], {}
    for k in keys.tolist():
        want.append(seen.setdefault(bytes(k), len(seen)))
    words = keys.view(np.uint32).reshape(len(keys), 9)
    half = len(keys) // 2
    for k in _kernel_forms():
        table = np.full(1 << (2 * len(keys)).bit_length(), -1, np.int64)     # (as small as the wrapper's)
        stored = np.zeros((len(keys), 9), np.uint32)
        out = np.empty(len(keys), np.int64)
        n = k.intern_keys(words[:half], table, stored, 0, True, -1, out[:half])
        n = k.intern_keys(words[half:], table, stored, n, True, -1, out[half:])
        assert out.tolist() == want and n == len(seen), k.__name__
        look = np.empty(len(keys) + 1, np.int64)
        probe = np.concatenate([words, rng.integers(0, 1 << 32, (1, 9), dtype=np.uint32)])
        k.intern_keys(probe, table, stored, n, False, -99, look)
        assert look.tolist() == want + [-99], k.__name__
