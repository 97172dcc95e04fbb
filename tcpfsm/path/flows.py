"""Path facts per connection: the sequence analysis' conversations tied to the tracker's flows.

Owns the `path` record of a flow (handshake RTT and its legs, RTT samples by Karn's rule, retransmissions,
zero-window time, negotiated options, keep-alives, the TTL / hop limit each side's packets arrived with
and the hops it implies, the ICMP errors tied to it (path/icmp.py)) and the lookup `path_record(flow)` the renderers use.
A conversation belongs to the flow of the same 4-tuple that started last at or before the conversation's
first packet (the tracker and Wireshark split a 4-tuple at the same new-ISN SYN; where the tracker also
splits a stale connection picked up again without SYN, the conversation's facts stay with the first
flow). Arrays are per flow, computed once column-wise (numpy, and the path kernel for the RTT jitter); each
record is built when it is rendered.
Must not: change a flow or decide states.
"""
from __future__ import annotations

import weakref
from operator import attrgetter

import numpy as np
import orjson

from ..track.flowtable import Flow
from .segments import CS, DS, SequenceAnalysis, dense_ids, rtt_by_flow, sum_by_flow

NS = 1_000_000_000
# the PathFacts alive, each knowing its flows' rows by flow id (`facts_of`): not a weak-keyed entry per flow
# (a weak reference, a tuple and a row: ~250 bytes a flow, 50 MB at 200,000 connections). Weak references in a
# list (dead ones dropped when another is made), not a WeakSet: `facts_of` runs once per rendered flow, and a
# WeakSet's iteration is a Python generator (~2 µs)
_FACTS: list[weakref.ref] = []


def flow_key(f: Flow) -> bytes:
    """The 36-byte key tcpfsm.capture.keys gives the flow's segments: lower side (address, port) first."""
    c = f.client_raw + f.client_port.to_bytes(2, "big")
    s = f.server_raw + f.server_port.to_bytes(2, "big")
    return c + s if f.client_is_lo else s + c


INITIAL_TTLS = (32, 64, 128, 255)       # what operating systems start with (Linux/macOS 64, Windows 128, ...)


def hops(ttl: int | None) -> int | None:
    """Routers crossed, from a TTL / hop limit seen: the nearest initial TTL at or above it, minus it (TTL
    arithmetic as with ping: 56 from a sender of 64 crossed 8 routers). None when unknown."""
    if ttl is None or ttl < 0:
        return None
    for start in INITIAL_TTLS:
        if ttl <= start:
            return start - ttl
    return None


def _sec(ns) -> float | None:
    return None if ns is None else round(int(ns) / NS, 6)


class PathFacts:
    """Per-flow path arrays (row i = flows[i]) and the conversation -> flow map."""

    def __init__(self, sa: SequenceAnalysis, flows: list[Flow]):
        self.flows = flows
        cs, ds = sa.conv_state()
        nconv, nf = len(cs), len(flows)
        fc = flow_columns(flows, _KEY_COLUMNS)  # (not kept: 49 bytes a flow; what is needed later is derived)
        self.conv_flow = conv_flow = _conv_flows(sa, cs, fc, flows)
        # client direction of each conversation: its flow's client side is the key's lower side (dir 1)
        cdir = fc["client_is_lo"].astype(np.int64)
        ok = conv_flow >= 0
        conv_ok = np.flatnonzero(ok)
        fl = conv_flow[ok]
        cd = cdir[fl]
        rows_c = 2 * conv_ok + cd            # ds row of the client's direction
        rows_s = 2 * conv_ok + 1 - cd
        into = _PerFlow(fl, nf)

        last_ts = cs[conv_ok, CS["last_ts"]]

        def zw_ns(rows):
            since = ds[rows, DS["zw_since"]]
            open_ = np.where(since >= 0, last_ts - since, 0)     # a window still shut at the end counts to then
            return into.sum(ds[rows, DS["zw_ns"]] + open_)

        sides = (("client", rows_c), ("server", rows_s))
        sums = {r: dict(zip(_COUNTED, sum_by_flow(ds, rows, fl, [DS[c] for c in _COUNTED], nf))) for r, rows in sides}
        self.retx = {r: (sums[r]["retx_segments"], sums[r]["retx_bytes"]) for r, _ in sides}
        self.zw = {r: (sums[r]["zw_segments"], zw_ns(rows)) for r, rows in sides}
        self.keepalives = {r: sums[r]["keepalives"] for r, _ in sides}
        self.segments = {r: sums[r]["segments"] for r, _ in sides}
        self.syns = {r: sums[r]["syns"] for r, _ in sides}
        self.data = {r: (sums[r]["data_segments"], sums[r]["retx_data"]) for r, _ in sides}
        del sums
        # first zero-window packet per side (evidence)
        self.first_zw = {}
        for r, rows in (("client", rows_c), ("server", rows_s)):
            v = ds[rows, DS["first_zw_packet"]]
            self.first_zw[r] = into.min(np.where(v > 0, v, np.iinfo(np.int64).max))
        # the handshake and options: from the flow's first conversation (lowest slot) that has them
        self.conv_of_flow = np.full(nf, -1, np.int64)
        first = into.min(conv_ok)
        has = first < np.iinfo(np.int64).max
        self.conv_of_flow[has] = first[has]
        self.cs, self.ds, self.cdir = cs, ds, cdir
        # highest TTL seen per side (fewest hops: a path that changed shows its shortest), from the flow's first
        # conversation (-1: unknown)
        tf = getattr(sa, "ttl_max", None)
        self.ttl = {"client": np.full(nf, -1, np.int64), "server": np.full(nf, -1, np.int64)}
        if tf is not None and len(tf) and has.any():
            cv = self.conv_of_flow[has]
            for r, d in (("client", cdir[has]), ("server", 1 - cdir[has])):
                rows = 2 * cv + d
                ok = rows < len(tf)
                vals = np.full(len(rows), -1, np.int64)
                vals[ok] = tf[rows[ok]]
                self.ttl[r][has] = vals
        self.icmp = None                        # path/icmp.IcmpFacts, set by tcpfsm.path.attach when any
        self._cols: dict | None = None
        self._arrs: dict | None = None
        self._json: tuple | None = None
        self._pairs = _pair_codes(fc)           # (path_rules' lossy_path asks for them on every analysis)
        self._rtt(sa, nf)
        self._rows = {f.id: row for row, f in enumerate(flows)}     # flow id -> row (the ids are the flows' own)
        _FACTS[:] = [r for r in _FACTS if r() is not None]
        _FACTS.append(weakref.ref(self))

    def row_of(self, flow: Flow) -> int | None:
        """The row of `flow` here, None when it is not one of these flows."""
        row = self._rows.get(flow.id)
        return row if row is not None and self.flows[row] is flow else None

    def _rtt(self, sa: SequenceAnalysis, nf: int) -> None:
        # (temporaries are dropped as soon as they are used: this runs with every connection still in memory,
        # and each array here is 8 bytes a sample -- about 0.4 million samples on the bench capture)
        # One kernel pass over the samples in time order (they come in packet order: fed in capture order) gives
        # the count, the jitter -- mean absolute difference of consecutive samples, in time order (as mtr's and
        # RFC 3550's) -- and for the order statistics the samples sorted by (flow, rtt): each flow's run holds
        # its sorted samples
        conv, _acker_lo, rtt, packet = sa.rtt_samples()
        self.rtt_n, tot, ro = rtt_by_flow(conv, rtt, packet, self.conv_flow, nf)
        del conv, _acker_lo, rtt, packet
        self.rtt_jitter = tot / np.maximum(self.rtt_n - 1, 1)
        del tot
        self.rtt_min = np.zeros(nf, np.int64)
        self.rtt_max = np.zeros(nf, np.int64)
        self.rtt_med = np.zeros(nf, np.float64)
        self.rtt_p95 = np.zeros(nf, np.float64)
        self.rtt_mean = np.zeros(nf, np.float64)
        if not len(ro):
            return
        ids = np.flatnonzero(self.rtt_n)
        n = self.rtt_n[ids]
        starts = np.cumsum(n) - n
        self.rtt_min[ids] = ro[starts]
        self.rtt_max[ids] = ro[starts + n - 1]
        rs = ro.astype(np.float64)
        del ro

        def pct(q: float) -> np.ndarray:     # linear interpolation between closest ranks (numpy's default)
            pos = starts + (n - 1) * q
            lo = np.floor(pos).astype(np.int64)
            hi = np.minimum(lo + 1, starts + n - 1)
            return rs[lo] + (rs[hi] - rs[lo]) * (pos - lo)

        self.rtt_med[ids] = pct(0.5)
        self.rtt_p95[ids] = pct(0.95)
        self.rtt_mean[ids] = np.add.reduceat(rs, starts) / n

    def pair_codes(self) -> np.ndarray:
        """Each flow's host pair (client address, server address) as a number, the pairs numbered in order of
        their first flow: what tcpfsm.detect.path_rules and the paths view group by, column-wise (the
        addresses' text is only made for the pairs they report)."""
        return self._pairs

    def pair_hops(self, rows: np.ndarray) -> dict:
        """Hops of each side over the flows `rows` (a host pair's): the most common value (ties: the
        smaller), None when no TTL was seen."""
        out = {}
        for r in ("client", "server"):
            vals = [h for h in (hops(int(t)) for t in self.ttl[r][rows].tolist()) if h is not None]
            out[r] = min(set(vals), key=lambda h: (-vals.count(h), h)) if vals else None
        return out

    # -- per flow --------------------------------------------------------------------------------------
    def handshake_rtt(self, row: int) -> float | None:
        """The flow's handshake RTT in seconds (µs), None without a full handshake."""
        return (self._cols or self._columns())["hs"][row]

    def _arrays(self) -> dict:
        """Every number of the records as a numpy array per flow (ns where a record has seconds, negative
        where it has None), computed once: what `_columns` (records as dicts) and `json_columns` (records
        written by tcpfsm/render/_emit.py) both read."""
        if self._arrs is not None:
            return self._arrs
        conv = self.conv_of_flow
        has = conv >= 0
        cv = np.where(has, conv, 0)
        cs, ds = self.cs, self.ds
        first_rtt = np.where(has, cs[cv, CS["first_rtt"]] if len(cs) else 0, 0)
        known = first_rtt != 0
        leg1 = np.where(known, cs[cv, CS["synack_leg"]] if len(cs) else -1, -1)
        leg2 = np.where(known, cs[cv, CS["ack_leg"]] if len(cs) else -1, -1)
        rc = 2 * cv + self.cdir
        rs = 2 * cv + 1 - self.cdir

        def col(rows, name):
            return np.where(has, ds[rows, DS[name]] if len(ds) else 0, 0)

        both = (col(rc, "syns") > 0) & (col(rs, "syns") > 0)
        wc, ws = col(rc, "syn_wscale"), col(rs, "syn_wscale")
        a = {
            "hs": np.where(known, first_rtt, -1), "leg1": leg1, "leg2": leg2,
            "mss_c": col(rc, "mss"), "mss_s": col(rs, "mss"),
            "ws": both & has & (wc >= 0) & (ws >= 0), "wc": wc, "wsv": ws,
            "sack": both & has & (col(rc, "sack") > 0) & (col(rs, "sack") > 0),
            "tsopt": both & has & (col(rc, "tsopt") > 0) & (col(rs, "tsopt") > 0),
            "n": self.rtt_n, "min": self.rtt_min, "max": self.rtt_max,
            "med": self.rtt_med, "p95": self.rtt_p95, "jit": self.rtt_jitter,
        }
        for r in ("client", "server"):
            a[f"retx_{r}"] = self.retx[r][0]
            a[f"retxb_{r}"] = self.retx[r][1]
            a[f"zw_{r}"] = self.zw[r][0]
            a[f"zws_{r}"] = self.zw[r][1]
            a[f"ka_{r}"] = self.keepalives[r]
            a[f"ttl_{r}"] = ttl = self.ttl[r]
            h = np.full(len(ttl), -1, np.int64)              # `hops` of each TTL
            for start in reversed(INITIAL_TTLS):             # the smallest start at or above the TTL wins
                h = np.where((ttl >= 0) & (ttl <= start), start - ttl, h)
            a[f"hops_{r}"] = h
        for k in ("med", "p95", "jit"):                      # the seconds the records give: round(x / NS, 6)
            a[k + "_s"] = round6(a[k] / NS)
        self._arrs = a
        return a

    def _columns(self) -> dict:
        """Every number of the records as Python lists per flow, computed once (vectorized): rendering 26000
        flows must not index numpy scalars field by field."""
        if self._cols is not None:
            return self._cols
        nf = len(self.flows)
        a = self._arrays()
        c = {k: _secs(a[k]) if k in _SECONDS else a[k].tolist() for k in a}
        for k in ("ttl_client", "ttl_server", "hops_client", "hops_server"):
            c[k] = _none_below_0(a[k], c[k])
        assert len(c["hs"]) == nf
        self._cols = c
        return c

    def json_columns(self) -> tuple:
        """The records' numbers for tcpfsm/render/_emit.py, computed once: an int64 matrix, row = flow,
        columns in JSON_COLUMNS order (ns for seconds, negative for None; hops from the TTLs, -1 for None),
        and the median, p95 and jitter of the RTT as the JSON text of `record`'s rounded seconds per flow
        (round(x / NS, 6) is not a whole number of µs: orjson prints them)."""
        if self._json is not None:
            return self._json
        a = self._arrays()
        nf = len(self.flows)
        m = np.empty((nf, len(JSON_COLUMNS)), np.int64)
        for j, k in enumerate(JSON_COLUMNS):
            m[:, j] = a[k]
        texts = [orjson.dumps(a[k].tolist())[1:-1].split(b",") if nf else [] for k in ("med_s", "p95_s", "jit_s")]
        self._json = (m, *texts)
        return self._json

    def record(self, row: int) -> dict:
        c = self._cols or self._columns()
        n = c["n"][row]
        rtt = {"min": c["min"][row], "median": c["med_s"][row], "p95": c["p95_s"][row],
               "max": c["max"][row], "jitter": c["jit_s"][row], "samples": n} if n else \
            {"min": None, "median": None, "p95": None, "max": None, "jitter": None, "samples": 0}
        return {
            "handshake_rtt": c["hs"][row],
            "handshake_legs": {"syn_to_synack": c["leg1"][row], "synack_to_ack": c["leg2"][row]},
            "rtt": rtt,
            "retransmissions": {"client": {"segments": c["retx_client"][row], "bytes": c["retxb_client"][row]},
                                "server": {"segments": c["retx_server"][row], "bytes": c["retxb_server"][row]}},
            "zero_window": {"client": {"count": c["zw_client"][row], "seconds": c["zws_client"][row]},
                            "server": {"count": c["zw_server"][row], "seconds": c["zws_server"][row]}},
            "options": {"mss": {"client": c["mss_c"][row] or None, "server": c["mss_s"][row] or None},
                        "window_scale": {"client": c["wc"][row], "server": c["wsv"][row]} if c["ws"][row] else None,
                        "sack": c["sack"][row], "timestamps": c["tsopt"][row]},
            "keepalives": {"client": c["ka_client"][row], "server": c["ka_server"][row]},
            "ttl": {"client": c["ttl_client"][row], "server": c["ttl_server"][row]},
            "hops": {"client": c["hops_client"][row], "server": c["hops_server"][row]},
            "icmp": self.icmp.of_flow(row) if self.icmp is not None else [],
        }


# the per-direction counters summed over a flow's conversations (per side)
_COUNTED = ("retx_segments", "retx_bytes", "zw_segments", "keepalives", "segments", "syns", "data_segments",
            "retx_data")


class _PerFlow:
    """Per-conversation values reduced per flow (row = flow; `fl`: each conversation's flow). Where no flow has
    two conversations (the usual case: the tracker and the analysis split a 4-tuple at the same SYN) a reduction
    is a plain assignment, not a ufunc's `at` (~10x slower); the values are the same either way."""

    def __init__(self, fl: np.ndarray, nf: int):
        self.fl, self.nf = fl, nf
        self.one_each = not len(fl) or int(np.bincount(fl, minlength=nf).max()) <= 1

    def sum(self, v: np.ndarray) -> np.ndarray:
        out = np.zeros(self.nf, np.int64)
        if self.one_each:
            out[self.fl] = v
        else:
            np.add.at(out, self.fl, v)
        return out

    def min(self, v: np.ndarray) -> np.ndarray:
        """The least value of each flow's conversations, the largest int64 for a flow without any."""
        out = np.full(self.nf, np.iinfo(np.int64).max, np.int64)
        if self.one_each:
            out[self.fl] = v
        else:
            np.minimum.at(out, self.fl, v)
        return out


_SECONDS = frozenset({"hs", "leg1", "leg2", "min", "max", "zws_client", "zws_server"})
# the integer columns of `PathFacts.json_columns`, in the order tcpfsm/render/_emit.py reads them
JSON_COLUMNS = ("hs", "leg1", "leg2", "n", "min", "max", "retx_client", "retxb_client", "retx_server",
                "retxb_server", "zw_client", "zws_client", "zw_server", "zws_server", "mss_c", "mss_s", "ws", "wc",
                "wsv", "sack", "tsopt", "ka_client", "ka_server", "ttl_client", "ttl_server", "hops_client",
                "hops_server")


def round6(x: np.ndarray) -> np.ndarray:
    """Python's round(v, 6) of each float (correctly rounded: the 6-decimal number nearest the float's exact
    value, halves to even), vectorised: numpy's round scales by 1e6 first, and that product's own rounding
    can move it across a half; where it is that near a half, the exact product (Dekker's two-product: the
    rounded one plus its error, both floats) says on which side of the half it lies; where it is too large
    to hold a fraction, Python's round decides. (Python's round was 4,000 instructions a value: medians of
    microsecond timestamps are halves, a tenth of the values.)"""
    t = x * 1e6
    out = np.rint(t) / 1e6
    with np.errstate(invalid="ignore"):                    # (inf - inf: such values go to Python's round)
        big = ~(np.abs(t) < 2.0 ** 52)
        near = (np.abs(t - np.floor(t) - 0.5) <= 4 * np.spacing(np.abs(t))) & ~big
    if near.any():
        v, tv = x[near], t[near]
        c = _SPLIT * v
        hi = c - (c - v)                                   # v's upper 26 bits (Veltkamp), v - hi the rest
        err = (hi * 1e6 - tv) + (v - hi) * 1e6             # v * 1e6 - tv exactly (1e6 has 14 significant bits)
        fl = np.floor(tv)
        d = (tv - (fl + 0.5)) + err                         # the exact product's side of the half (0: on it)
        n = np.where(d > 0, fl + 1, np.where(d < 0, fl, np.rint(fl + 0.5)))
        out[near] = np.copysign(n / 1e6, v)                 # (a zero keeps the value's sign, as round's)
    if big.any():
        out[big] = [round(v, 6) for v in x[big].tolist()]
    return out


_SPLIT = 134217729.0            # 2**27 + 1: splits a double into two halves whose products are exact


def _secs(ns: np.ndarray) -> list:
    """ns -> seconds rounded to the µs (None where negative: unknown), as tcpfsm.render.records.sec rounds (a
    whole number of µs divided, else round(ns / NS, 6)); column-wise, and by Python's own arithmetic where a
    float64 would not hold the ns exactly."""
    v = np.asarray(ns, np.int64)
    out = np.where(v % 1000 == 0, (v // 1000) / 1e6, round6(v / NS)).tolist()
    for j in np.flatnonzero((v < 0) | (np.abs(v) >= 1 << 53)).tolist():
        x = int(v[j])
        us, sub = divmod(x, 1000)
        out[j] = None if x < 0 else us / 1e6 if not sub else round(x / NS, 6)
    return out


def _none_below_0(v: np.ndarray, values: list) -> list:
    """`values` (v as a list) with None where v is negative (unknown)."""
    for j in np.flatnonzero(v < 0).tolist():
        values[j] = None
    return values


def flow_columns(flows: list[Flow], names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The flows' identity as columns, one pass over them each (the facts are computed column-wise from these,
    not per flow object): id, first packet, client / server 16-byte addresses ("S16") and ports, client_is_lo;
    or only the columns `names`."""
    nf = len(flows)
    return {name: np.fromiter(map(attrgetter(name), flows), dt, nf) for name, dt in _FLOW_COLUMNS
            if names is None or name in names}


_FLOW_COLUMNS = (("id", np.int64), ("first_packet", np.int64), ("client_raw", "S16"), ("server_raw", "S16"),
                 ("client_port", np.int64), ("server_port", np.int64), ("client_is_lo", np.bool_))
# what PathFacts needs of every flow: its 4-tuple and orientation (the flows' keys, the host pairs); a flow's
# first packet only where a 4-tuple has several flows (`_conv_flows`), its id for the rows by id
_KEY_COLUMNS = ("client_raw", "server_raw", "client_port", "server_port", "client_is_lo")


def _pair_codes(fc: dict[str, np.ndarray]) -> np.ndarray:
    """PathFacts.pair_codes from `flow_columns`: the (client, server) addresses, padded to a flow key's width,
    numbered in order of first appearance by a key table of their own."""
    nf = len(fc["client_raw"])
    both = np.zeros((nf, 36), np.uint8)
    both[:, :16] = fc["client_raw"].view(np.uint8).reshape(nf, 16)
    both[:, 16:32] = fc["server_raw"].view(np.uint8).reshape(nf, 16)
    return dense_ids(both.view("V36").ravel())


def flow_keys(fc: dict[str, np.ndarray]) -> np.ndarray:
    """`flow_key` of every flow of `flow_columns`, as a V36 array (numpy, not bytes built per flow)."""
    nf = len(fc["client_raw"])
    sides = np.empty((nf, 2, 18), np.uint8)      # each flow's client then server side: address, big-endian port
    for j, (raw, port) in enumerate((("client_raw", "client_port"), ("server_raw", "server_port"))):
        sides[:, j, :16] = fc[raw].view(np.uint8).reshape(nf, 16)
        sides[:, j, 16:] = fc[port].astype(">u2").view(np.uint8).reshape(nf, 2)
    side = sides.view(np.uint16).reshape(2 * nf, 9)              # (a side's 18 bytes as 9 words: rows to gather)
    lower = 2 * np.arange(nf) + 1 - fc["client_is_lo"]          # (the lower side first)
    pick = np.empty((nf, 2), np.int64)
    pick[:, 0] = lower
    pick[:, 1] = lower ^ 1
    return side.take(pick.ravel(), axis=0).reshape(nf, 18).view("V36").ravel()


def _conv_flows(sa: SequenceAnalysis, cs: np.ndarray, fc: dict[str, np.ndarray], flows: list[Flow]) -> np.ndarray:
    """Each conversation's flow (row of the flows, -1: none): of the flows with the conversation's 4-tuple,
    the last that started at or before its first packet (or, when all started after, the first; among flows
    of one 4-tuple and first packet, the last row). By numpy over the 4-tuples' dense ids (the sequence
    analysis numbers them: `key_ids`): where no 4-tuple has two flows, the flow of the conversation's 4-tuple
    (whenever it started); else `_conv_flows_sorted`. `fc`: the flows' `_KEY_COLUMNS`."""
    nconv, nf = len(cs), len(flows)
    if not nconv or not nf:
        return np.full(nconv, -1, np.int64)
    fkid = sa.key_ids(flow_keys(fc))                     # (-1: a 4-tuple never analysed)
    known = np.flatnonzero(fkid >= 0)
    flow_of_key = np.full(sa.nkeys + 1, -1, np.int64)    # (+1: the overflow id, which holds no conversation)
    flow_of_key[fkid[known]] = known
    if np.count_nonzero(flow_of_key >= 0) == len(known):
        return flow_of_key[cs[:, CS["key"]]]
    first = flow_columns(flows, ("first_packet",))["first_packet"]
    return _conv_flows_sorted(fkid, first, cs[:, CS["key"]], cs[:, CS["first_packet"]])


def _conv_flows_sorted(fkid: np.ndarray, ffirst: np.ndarray, ckid: np.ndarray, cfirst: np.ndarray) -> np.ndarray:
    """`_conv_flows` from the flows' and the conversations' 4-tuple ids and first packets, for any flows: one
    sort of flows and conversations together, each conversation finding the flow sorted last before it and
    the one sorted first after it."""
    nf, nconv = len(fkid), len(ckid)
    conv_flow = np.full(nconv, -1, np.int64)
    kid = np.concatenate([fkid, ckid])
    first = np.concatenate([ffirst, cfirst])
    is_conv = np.repeat(np.array([0, 1], np.int8), [nf, nconv])
    order = np.lexsort((is_conv, first, kid))    # by 4-tuple, then first packet, flows before conversations
    del first, is_conv
    n = nf + nconv
    pos = np.arange(n)
    flow_at = order < nf
    before = np.maximum.accumulate(np.where(flow_at, pos, -1))                 # last flow sorted at or before
    after = np.minimum.accumulate(np.where(flow_at, pos, n)[::-1])[::-1]     # first flow sorted at or after
    del pos
    at = np.flatnonzero(~flow_at)                # the conversations' places
    conv = order[at] - nf
    ks = kid[order]
    b, a = before[at], after[at]
    same_b = (b >= 0) & (ks[np.maximum(b, 0)] == ks[at])
    same_a = (a < n) & (ks[np.minimum(a, n - 1)] == ks[at])
    conv_flow[conv] = np.where(same_b, order[np.maximum(b, 0)], np.where(same_a, order[np.minimum(a, n - 1)], -1))
    return conv_flow


def facts_of(flow: Flow) -> tuple[PathFacts, int] | None:
    """The PathFacts holding `flow` and its row there, or None when no path analysis ran for it."""
    for ref in _FACTS:
        facts = ref()
        if facts is not None:
            row = facts._rows.get(flow.id)      # (row_of inlined: this runs once per rendered flow)
            if row is not None and facts.flows[row] is flow:
                return facts, row
    return None


def path_record(flow: Flow) -> dict | None:
    """The flow's `path` record, or None when no path analysis ran for it."""
    got = facts_of(flow)
    return None if got is None else got[0].record(got[1])
