#!/usr/bin/env python3
"""Score tcpfsm's netstat view against the kernel-truth matrix (captures/matrix/).

Owns the comparison rule for the matrix (tests/test_kernel_matrix.py imports
it) and the list of snapshots the current engine gets wrong
(captures/matrix/known_misses.json); it must not record anything.

Rule, as in tests/test_kernel_truth.py: at each quiet snapshot, for the
client and the server host, the set of (local, remote, state) rows of
``analyze(pcap).netstat(t, host=..., listening=False)`` must equal ss's
(LISTEN left out).  A row whose kernel state is not the engine's ``state``
but is its ``alt`` (the alternative where packets cannot decide; absent on
engines without it) still matches, counted as "via alt".

Usage::

    python captures/matrix_score.py [--dir captures/matrix] [--markdown] [--write-known-misses] [--details]
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

MATRIX = Path(__file__).resolve().parent / "matrix"
KNOWN_MISSES = "known_misses.json"
SS_TO_STATE = {"SYN-SENT": "SYN_SENT", "SYN-RECV": "SYN_RECEIVED", "ESTAB": "ESTABLISHED",
               "FIN-WAIT-1": "FIN_WAIT_1", "FIN-WAIT-2": "FIN_WAIT_2", "CLOSE-WAIT": "CLOSE_WAIT",
               "CLOSING": "CLOSING", "LAST-ACK": "LAST_ACK", "TIME-WAIT": "TIME_WAIT", "LISTEN": "LISTEN",
               "UNCONN": "CLOSED", "CLOSE": "CLOSED"}
EXACT, ALT, MISS = "exact", "alt", "missed"


def truths(directory: Path = MATRIX) -> list[Path]:
    return sorted(directory.glob("*.truth.json"))


def pcap_of(truth: Path) -> Path:
    return truth.with_name(truth.name[: -len(".truth.json")] + ".pcap")


def cell_of(truth: Path) -> str:
    return truth.name[: -len(".truth.json")]


def quiet_snapshots(data: dict):
    """(index, snapshot) of the snapshots the comparison uses: the quiet ones."""
    return [(i, s) for i, s in enumerate(data["snapshots"]) if s.get("quiet", True) and not s.get("in_flight")]


def in_flight_snapshots(data: dict):
    """(index, snapshot) of the snapshots taken while packets were on the path (no kernel acting):
    scored apart (--in-flight), never in the test."""
    return [(i, s) for i, s in enumerate(data["snapshots"]) if s.get("in_flight")]


def kernel_rows(snap: dict, host: str) -> set:
    return {(s["local"], s["remote"], SS_TO_STATE[s["state"]])
            for s in snap["sockets"] if s["host"] == host and s["state"] != "LISTEN"}


def engine_rows(an, t: float, host: str) -> list:
    """(local, remote, state, alt) per socket; alt is None on an engine without it."""
    out = []
    for r in an.netstat(t, host=host, listening=False).sockets:
        alt = getattr(r, "alt", None)
        out.append((r.local, r.remote, r.state.value, getattr(alt, "value", alt)))
    return out


def analysis(truth: Path, data: dict):
    """The engine's analysis of a cell. The tap wrote the pcap until after the last snapshot, as `tcpdump`
    runs on past a capture's last packet on a quiet link: that is what `--end` says (timers run up to it)."""
    import tcpfsm
    last = max((s["t"] for s in data["snapshots"]), default=None)
    return tcpfsm.analyze(str(pcap_of(truth)), end=last)


def compare(want: set, got: list) -> tuple[str, str]:
    """(EXACT | ALT | MISS, explanation) for one host at one snapshot."""
    listed = [g for g in got if g[2] != "CLOSED"]      # a CLOSED row is there only for its alt
    exact = {(l, r, s) for l, r, s, _ in listed}
    if exact == want and len(listed) == len(want):
        return EXACT, ""
    left = set(want)
    unmatched = []
    for l, r, s, a in got:
        hit = next((w for w in left if w[0] == l and w[1] == r and w[2] in (s, a)), None)
        if hit is None:
            if s == "CLOSED":
                continue        # likely gone (listed only for its alt): the kernel not listing it agrees
            if a == "CLOSED":
                continue        # maybe gone already: the kernel not listing it is the alternative
            unmatched.append((l, r, s if a is None else "%s|alt %s" % (s, a)))
        else:
            left.discard(hit)
    if not left and not unmatched:
        return ALT, ""
    return MISS, "kernel only %s, engine only %s" % (sorted(left), sorted(unmatched))


def score_snapshot(an, data: dict, snap: dict) -> tuple[str, list[str]]:
    """Worst outcome over the client and the server host, and the explanations of misses."""
    outcome, why = EXACT, []
    for role, host in sorted(data["hosts"].items()):
        kind, expl = compare(kernel_rows(snap, host), engine_rows(an, snap["t"], host))
        if kind == MISS:
            outcome = MISS
            why.append("%s: %s" % (role, expl))
        elif kind == ALT and outcome == EXACT:
            outcome = ALT
    return outcome, why


def cell_key(data: dict) -> tuple:
    loss = data.get("loss") or {}
    where = loss.get("where", "").replace(" tap", "")
    return (data["scenario"], data["capture_point"], data["delay_ms"]["client_leg"] + data["delay_ms"]["server_leg"],
            ("lost " + where) if where else ("only " + data["one_sided"]) if data.get("one_sided") else "-")


def score(directory: Path = MATRIX, in_flight: bool = False):
    """Per cell counts, the missed snapshot indices per cell, and one line per miss.  With in_flight,
    the in-flight snapshots instead of the quiet ones."""
    import tcpfsm

    pick = in_flight_snapshots if in_flight else quiet_snapshots
    rows = {}
    misses = {}
    details = []
    for truth in truths(directory):
        data = json.loads(truth.read_text())
        chosen = pick(data)
        if in_flight and not chosen:
            continue
        an = analysis(truth, data)
        counts = {EXACT: 0, ALT: 0, MISS: 0,
                  "not quiet": 0 if in_flight else len(data["snapshots"]) - len(chosen) - len(in_flight_snapshots(data))}
        for i, snap in chosen:
            kind, why = score_snapshot(an, data, snap)
            counts[kind] += 1
            if kind == MISS:
                misses.setdefault(cell_of(truth), []).append(i)
                on_path = ", ".join("%s %s%s %.0f ms ago%s" % (f["dir"], f["flags"], " (tapped)" if f["tapped"] else
                                                                " (not yet tapped)", f["sent_ms_ago"],
                                                                " lost" if f["lost"] else "")
                                    for f in snap.get("frames_on_path", []))
                details.append("%s #%d %r (t=%.3f): %s%s" % (cell_of(truth), i, snap.get("label"), snap["t"],
                                                             "; ".join(why),
                                                             (" | on the path: " + on_path) if on_path else ""))
        rows[cell_key(data)] = counts
    return rows, misses, details


def cut_to_host(pcap: Path, dst: Path, keep: str) -> None:
    """The frames of an Ethernet `pcap` sent by address `keep` (IPv4 or IPv6): what a capture of one direction
    would hold. (tests/test_observer.py cuts the kernel recordings with it too.)"""
    import socket
    import dpkt
    with open(pcap, "rb") as f, open(dst, "wb") as g:
        r = dpkt.pcap.Reader(f)
        w = dpkt.pcap.Writer(g, linktype=r.datalink(), snaplen=r.snaplen)
        for ts, buf in r:
            ip = dpkt.ethernet.Ethernet(buf).data
            if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
                continue
            fam = socket.AF_INET6 if isinstance(ip, dpkt.ip6.IP6) else socket.AF_INET
            if socket.inet_ntop(fam, ip.src) == keep:
                w.writepkt(buf, ts)


def score_one_sided(directory: Path = MATRIX):
    """Every two-sided cell cut to the packets of one host (client, then server), scored at its quiet
    snapshots on the connections the cut shows: per (scenario, host kept), the counts. Both hosts' sockets are
    compared, the unseen one's too (what the seen side's packets imply of it)."""
    import tempfile
    import tcpfsm

    rows = defaultdict(lambda: {EXACT: 0, ALT: 0, MISS: 0, "not quiet": 0})
    with tempfile.TemporaryDirectory() as tmp:
        for truth in truths(directory):
            data = json.loads(truth.read_text())
            if data.get("one_sided"):
                continue
            last = max((s["t"] for s in data["snapshots"]), default=None)
            for role, keep in sorted(data["hosts"].items()):
                dst = Path(tmp) / ("%s.%s.pcap" % (cell_of(truth), role))
                cut_to_host(pcap_of(truth), dst, keep)
                an = tcpfsm.analyze(str(dst), end=last)
                seen = {(f.client, f.server) for f in an.flows} | {(f.server, f.client) for f in an.flows}
                counts = rows[(data["scenario"], "only " + role)]
                for _, snap in quiet_snapshots(data):
                    for _, host in sorted(data["hosts"].items()):
                        want = {w for w in kernel_rows(snap, host) if (w[0], w[1]) in seen}
                        got = [g for g in engine_rows(an, snap["t"], host) if (g[0], g[1]) in seen]
                        counts[compare(want, got)[0]] += 1
    return dict(rows)


def one_sided_table(rows: dict, markdown: bool) -> str:
    head = ["scenario", "packets of", "exact", "via alt", "missed"]
    body, tot = [], defaultdict(int)
    for (sc, kept) in sorted(rows):
        c = rows[(sc, kept)]
        for x in (EXACT, ALT, MISS):
            tot[x] += c[x]
        body.append([sc, kept[5:], str(c[EXACT]), str(c[ALT]), str(c[MISS])])
    n = tot[EXACT] + tot[ALT] + tot[MISS]
    body.append(["**total**" if markdown else "TOTAL", "", str(tot[EXACT]), str(tot[ALT]), str(tot[MISS])])
    summary = ("%d host snapshots: %d exact, %d via alt, %d missed (%.1f%% right)"
               % (n, tot[EXACT], tot[ALT], tot[MISS], 100.0 * (tot[EXACT] + tot[ALT]) / max(1, n)))
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|---|---|---:|---:|---:|"] +
                         ["| " + " | ".join(r) + " |" for r in body]) + "\n\n" + summary + "\n"
    w = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    return "\n".join("  ".join(x.ljust(w[i]) if i < 2 else x.rjust(w[i]) for i, x in enumerate(r))
                     for r in [head] + body) + "\n\n" + summary + "\n"


def table(rows: dict, markdown: bool) -> str:
    order = {"client": 0, "middle": 1, "server": 2}
    keys = sorted(rows, key=lambda k: (k[0], order.get(k[1], 9), k[2], k[3]))
    head = ["scenario", "capture point", "one-way delay", "loss / one-sided", "exact", "via alt", "missed",
            "not quiet"]
    body = []
    tot = defaultdict(int)
    for k in keys:
        c = rows[k]
        for x in c:
            tot[x] += c[x]
        body.append([k[0], k[1], "%g ms" % k[2], k[3], str(c[EXACT]), str(c[ALT]), str(c[MISS]), str(c["not quiet"])])
    n = tot[EXACT] + tot[ALT] + tot[MISS]
    body.append(["**total**" if markdown else "TOTAL", "", "", "%d cells" % len(keys), str(tot[EXACT]),
                 str(tot[ALT]), str(tot[MISS]), str(tot["not quiet"])])
    summary = ("%d snapshots: %d exact (%.1f%%), %d via alt, %d missed (%.1f%%)"
               % (n, tot[EXACT], 100.0 * tot[EXACT] / max(1, n), tot[ALT], tot[MISS], 100.0 * tot[MISS] / max(1, n)))
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines) + "\n\n" + summary + "\n"
    w = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    fmt = lambda r: "  ".join(x.ljust(w[i]) if i < 4 else x.rjust(w[i]) for i, x in enumerate(r))
    return "\n".join([fmt(head), fmt(["-" * x for x in w])] + [fmt(r) for r in body]) + "\n\n" + summary + "\n"


def by_scenario(rows: dict, markdown: bool) -> str:
    agg = defaultdict(lambda: defaultdict(int))
    for k, c in rows.items():
        a = agg[(k[0], k[1])]
        for x in (EXACT, ALT, MISS):
            a[x] += c[x]
    scen = sorted({k[0] for k in agg})
    head = ["scenario", "client", "middle", "server"]
    cell = lambda a: "%d/%d" % (a[EXACT] + a[ALT], a[EXACT] + a[ALT] + a[MISS]) if a else "-"
    body = [[s] + [cell(agg.get((s, p), {})) for p in ("client", "middle", "server")] for s in scen]
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|---|---|---|---|"] +
                         ["| " + " | ".join(r) + " |" for r in body]) + "\n"
    w = [max(len(r[i]) for r in [head] + body) for i in range(4)]
    return "\n".join("  ".join(x.ljust(w[i]) for i, x in enumerate(r)) for r in [head] + body) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=MATRIX)
    ap.add_argument("--markdown", action="store_true", help="Markdown tables (for the README)")
    ap.add_argument("--write-known-misses", action="store_true",
                    help="write <dir>/known_misses.json: the snapshots the test marks xfail")
    ap.add_argument("--details", action="store_true", help="print every missed snapshot with the difference")
    ap.add_argument("--in-flight", action="store_true",
                    help="score the in-flight snapshots (packets on the path, kernels not acting) instead; "
                         "they are not in the test")
    ap.add_argument("--one-sided", action="store_true",
                    help="cut every two-sided cell to one host's packets and score that (not in known_misses)")
    args = ap.parse_args(argv)
    if args.one_sided:
        print(one_sided_table(score_one_sided(args.dir), args.markdown))
        return 0
    if args.in_flight and args.write_known_misses:
        ap.error("known_misses.json is about the quiet snapshots only")
    rows, misses, details = score(args.dir, in_flight=args.in_flight)
    print(table(rows, args.markdown))
    print("matched (exact or via alt) / scored snapshots, per scenario and capture point:\n")
    print(by_scenario(rows, args.markdown))
    if args.details:
        print("\n".join(details))
    if args.write_known_misses:
        path = args.dir / KNOWN_MISSES
        path.write_text(json.dumps({"comment": "snapshot indices the current engine misses; "
                                               "tests/test_kernel_matrix.py marks exactly these xfail(strict=False). "
                                               "Regenerate: python captures/matrix_score.py --write-known-misses",
                                    "misses": dict(sorted(misses.items()))}, indent=1) + "\n")
        print("wrote %s (%d snapshots in %d cells)" % (path, sum(map(len, misses.values())), len(misses)),
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
