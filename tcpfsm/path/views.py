"""The path views: `segments` (one row per TCP segment with Wireshark's analysis flags, tcpdump-like) and
`paths` (per host pair, laid out like `mtr --report`).

Owns the rows and records of these two views, in text, CSV and JSON (segments also as Parquet, laid out by
tcpfsm.render.tabular); the mtr-like cells the HTML report reuses. Reads an `Analysis` that ran with
path health (`an.path`, and `an.path_segments` for the segments view). Must not analyse anything.
"""
from __future__ import annotations

import csv
import io

import numpy as np
import orjson

from ..render.records import sec
from ..render.text import clock, flag_text
from .segments import DS, analysis_names

NS = 1_000_000_000
SEGMENT_KEYS = ("packet", "ts", "flow", "endpoint", "flags", "seq", "ack", "len", "win", "analysis")


def _signed(x: int) -> int:
    return x - (1 << 32) if x >= 1 << 31 else x


def segment_rows(an, flow_ids: set[int] | None = None, absolute: bool = False):
    """Yield (record dict, dupnum, src, dst) per segment in capture order; only `flow_ids` when given.
    seq/ack are relative to each direction's base (the ISN, as tcpdump and Wireshark print them) unless
    `absolute`."""
    sa, facts = an.path_segments, an.path
    r = sa.rows()
    if not len(r.index):
        return
    seen = r.conv >= 0                                       # (-1: beyond the cap on conversations analysed)
    conv = np.maximum(r.conv, 0)
    flow_row = np.where(seen, facts.conv_flow[conv] if len(facts.conv_flow) else -1, -1)
    ids = np.array([f.id for f in an.flows] + [0], np.int64)[np.where(flow_row >= 0, flow_row, len(an.flows))]
    cdir = np.append(facts.cdir, 0)[np.where(flow_row >= 0, flow_row, len(facts.cdir))]
    client = r.lo.astype(np.int64) == cdir
    ds = facts.ds
    if absolute:
        seq, ack = r.seq.astype(np.int64), r.ack.astype(np.int64)
    else:
        fwd = 2 * conv + r.lo.astype(np.int64)
        rev = 2 * conv + 1 - r.lo.astype(np.int64)
        base_f = np.where(seen, ds[fwd, DS["base"]] if len(ds) else 0, 0)
        base_r = np.where(seen, ds[rev, DS["base"]] if len(ds) else 0, 0)
        seq = (r.seq.astype(np.int64) - base_f) & 0xFFFFFFFF
        ack = np.where(r.flags & 0x10, (r.ack.astype(np.int64) - base_r) & 0xFFFFFFFF, 0)
    keep = np.ones(len(ids), bool) if flow_ids is None else np.isin(ids, list(flow_ids))
    names, flags, ends = {}, {}, {}           # per analysis bits, TCP flags and flow id: made once
    by_id = {f.id: f for f in an.flows}
    sel = np.flatnonzero(keep)
    for at in range(0, len(sel), _CHUNK):     # columns as Python lists a chunk at a time (no numpy scalar per field)
        part = sel[at:at + _CHUNK]
        for packet, ts, fid, cl, fl, sq, ak, ln, win, bits, dup in zip(*(
                x[part].tolist() for x in (r.index, r.ts, ids, client, r.flags, seq, ack, r.plen, r.win, r.bits,
                                           r.dupnum))):
            an_names = names.get(bits)
            if an_names is None:
                an_names = names[bits] = analysis_names(bits)
            ft = flags.get(fl)
            if ft is None:
                ft = flags[fl] = flag_text(fl)
            role = "client" if cl else "server"
            rec = {"packet": packet, "ts": sec(ts), "flow": fid, "endpoint": role, "flags": ft, "seq": sq,
                   "ack": ak, "len": ln, "win": win, "analysis": an_names}
            e = ends.get(fid)
            if e is None:
                f = by_id.get(fid)
                e = ends[fid] = ("?", "?") if f is None else (f.client, f.server)
            yield rec, dup, *(e if cl else e[::-1])


_CHUNK = 1 << 16


def write_segments(an, out, fmt: str, flow_ids=None, absolute: bool = False, names=None) -> int:
    """Write the segments view to `out` (an Output); returns the number of rows."""
    n = 0
    rows = segment_rows(an, flow_ids, absolute)
    if fmt == "parquet":
        from ..render.tabular import write_segments_parquet
        return write_segments_parquet(((rec, dup) for rec, dup, _, _ in rows), out)
    if fmt == "json":
        out.write(b'{"segments": [')
        for rec, _, _, _ in rows:
            out.write((b",\n" if n else b"\n") + orjson.dumps(rec))
            n += 1
        out.write(b"\n]}\n")
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(SEGMENT_KEYS + ("duplicate_ack_num",))
        for rec, dup, _, _ in rows:
            w.writerow([rec[k] if k != "analysis" else " ".join(rec[k]) for k in SEGMENT_KEYS] + [dup or ""])
            n += 1
            if n % 4096 == 0:
                out.text(buf.getvalue())
                buf.seek(0)
                buf.truncate()
        out.text(buf.getvalue())
    else:
        lines = []
        for rec, dup, src, dst in rows:
            tags = [a if a != "duplicate_ack" else f"duplicate_ack #{dup}" for a in rec["analysis"]]
            if names is not None:
                src, dst = names.label_hostport(src), names.label_hostport(dst)
            lines.append(f"{clock(int(round(rec['ts'] * NS)))} #{rec['packet']} flow {rec['flow']} {src} > {dst}: "
                         f"Flags [{rec['flags']}], seq {rec['seq']}, ack {rec['ack']}, win {rec['win']}, "
                         f"length {rec['len']}" + (f" [{', '.join(tags)}]" if tags else "") + "\n")
            n += 1
            if len(lines) >= 4096:
                out.text("".join(lines))
                lines = []
        out.text("".join(lines))
    return n


# -- paths: mtr --report per host pair -------------------------------------------------------------
def path_pairs(an) -> list[dict]:
    """One record per host pair (client address, server address), busiest first: like `mtr --report`,
    loss from retransmitted data segments over data segments sent (both ways), RTT statistics (ms) from
    the Karn samples of every connection between them, and the handshake RTTs. The flows and the samples
    are grouped by pair once (sorted), not looked for pair by pair."""
    facts = an.path
    flows = an.flows
    code = facts.pair_codes()
    npairs = int(code.max()) + 1 if len(code) else 0
    by_pair = np.argsort(code, kind="stable")                   # each pair's flows, in row order
    fb = np.searchsorted(code[by_pair], np.arange(npairs + 1))
    sent = np.zeros(npairs, np.int64)
    retx = np.zeros(npairs, np.int64)
    for r in ("client", "server"):
        np.add.at(sent, code, facts.data[r][0])
        np.add.at(retx, code, facts.data[r][1])
    conv, _lo, rtt, packet = an.path_rtt
    frow = facts.conv_flow[conv] if len(conv) else np.zeros(0, np.int64)
    mine = frow >= 0
    spair = code[frow[mine]]
    o = np.lexsort((packet[mine], spair))                       # each pair's samples, in packet order
    rs = rtt[mine][o]
    sb = np.searchsorted(spair[o], np.arange(npairs + 1))
    out = []
    for p in range(npairs):
        rows = by_pair[fb[p]:fb[p + 1]]
        f0 = flows[int(rows[0])]
        samples = rs[sb[p]:sb[p + 1]] / 1e6          # ms
        hs = [facts.handshake_rtt(r) for r in rows.tolist()]
        hs = [h * 1e3 for h in hs if h is not None]
        rec = {"client": f0.client_ip, "server": f0.server_ip, "connections": len(rows),
               "hops": facts.pair_hops(rows), "loss_pct": round(100.0 * int(retx[p]) / int(sent[p]), 2)
               if sent[p] else 0.0, "sent": int(sent[p]), "retransmitted": int(retx[p]),
               "rtt_ms": None, "handshake_rtt_ms": None}
        if len(samples):
            rec["rtt_ms"] = {"last": round(float(samples[-1]), 3), "avg": round(float(samples.mean()), 3),
                             "best": round(float(samples.min()), 3), "worst": round(float(samples.max()), 3),
                             "stdev": round(float(samples.std()), 3), "samples": int(len(samples))}
        if hs:
            a = np.asarray(hs)
            rec["handshake_rtt_ms"] = {"avg": round(float(a.mean()), 3), "best": round(float(a.min()), 3),
                                       "worst": round(float(a.max()), 3), "samples": len(hs)}
        out.append(rec)
    out.sort(key=lambda r: (-r["sent"], r["client"], r["server"]))
    return out


PATHS_HEAD = ("Client", "Server", "Conns", "Hops", "Loss%", "Snt", "Last", "Avg", "Best", "Wrst", "StDev", "HsAvg")
PATHS_NOTE = ("RTT columns in ms, from ACKs by Karn's rule; Loss% = retransmitted data segments / data segments; "
              "Hops = routers between each side and the capture point, client/server, from the TTL")


def path_cells(p: dict, names=None) -> list[str]:
    """One host pair's `mtr --report` cells under PATHS_HEAD (the text view's and the HTML report's)."""
    r = p["rtt_ms"] or {}
    h = p["handshake_rtt_ms"] or {}
    c, s = p["client"], p["server"]
    if names is not None:
        c, s = names.label(c), names.label(s)
    hp = p.get("hops") or {}
    return ([c, s, str(p["connections"]),
             "/".join("-" if hp.get(k) is None else str(hp[k]) for k in ("client", "server")),
             f"{p['loss_pct']:.1f}%", str(p["sent"])] +
            [f"{r[k]:.3f}" if k in r else "-" for k in ("last", "avg", "best", "worst", "stdev")] +
            [f"{h['avg']:.3f}" if h else "-"])


def paths_text(pairs: list[dict], names=None) -> str:
    """`mtr --report`'s columns, one line per host pair."""
    head = list(PATHS_HEAD)
    rows = [path_cells(p, names) for p in pairs]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(x.rjust(w) if j >= 2 else x.ljust(w) for j, (x, w) in enumerate(zip(row, widths))).rstrip()
             for row in [head] + rows]
    return "\n".join(lines) + "\n" + f"({PATHS_NOTE})\n"
