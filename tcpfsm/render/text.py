"""Human-readable views: the analyze report (rich), timelines, the netstat table, state counts.

Owns layout only; every number comes from an `Analysis`.
"""
from __future__ import annotations

import csv
import io
import os
from collections import Counter
from datetime import datetime

from typing import TYPE_CHECKING

from ..detect.occupancy import LISTED
from ..detect.zeek import conn_state
from ..fsm import NETSTAT_NAME, State


def esc(text: str) -> str:
    """Data shown in a rich table: "[fd81::2]:443" is an address, not markup."""
    from rich.markup import escape
    return escape(text)


def alt_mark(alt: State | None) -> str:
    """A state the packets could not decide is printed with a question mark and its alternative."""
    return "" if alt is None else f"? (or {NETSTAT_NAME[alt]})"
from ..track.flowtable import Flow

if TYPE_CHECKING:                   # rich is imported by the views that draw tables, not by csv/json runs
    from rich.console import Console

NS = 1_000_000_000
SEV_STYLE = {"critical": "bold white on red", "high": "bold red", "medium": "yellow", "low": "cyan", "info": "dim"}
STATE_ORDER = [s for s in State]


def clock(ns: int, date: bool = False) -> str:
    """Local wall-clock time like tcpdump prints it."""
    dt = datetime.fromtimestamp(ns / NS)
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f" if date else "%H:%M:%S.%f")


def flag_text(flags: int) -> str:
    """tcpdump-style flags: S, S., P., F., R ..."""
    out = "".join(ch for bit, ch in ((0x02, "S"), (0x01, "F"), (0x08, "P"), (0x04, "R"), (0x20, "U"),
                                     (0x40, "E"), (0x80, "W")) if flags & bit)
    return out + ("." if flags & 0x10 else "") or "none"


FLAG_NAMES = ((0x02, "SYN"), (0x01, "FIN"), (0x04, "RST"), (0x08, "PSH"), (0x20, "URG"), (0x40, "ECE"),
              (0x80, "CWR"), (0x10, "ACK"))


def flag_names(flags: int) -> str:
    """Wireshark's flow-graph spelling: SYN, ACK / FIN, ACK / PSH, ACK ..."""
    return ", ".join(name for bit, name in FLAG_NAMES if flags & bit) or "none"


def seg_text(seg: tuple | None) -> str:
    if not seg:
        return ""
    role, flags, seq, ack, plen = seg
    return f"{role}→ [{flag_text(flags)}] seq {seq} ack {ack} len {plen}"


def show(console: Console, renderable) -> None:
    """Print a table so that nothing in it is ever cut: cells wrap at spaces only when the console is
    narrow, and when even their longest words do not fit side by side (an IPv6 address, a state name),
    the table is printed wider than the console -- the terminal wraps the line, the text stays whole."""
    from rich.measure import Measurement
    from rich.table import Table
    if not isinstance(renderable, Table):
        console.print(renderable)
        return
    # Rich, given too little room, squeezes columns below their longest word and then elides ('…'). We
    # lay the columns out ourselves: natural widths when they fit; else each column gives up room in
    # proportion to how far it can wrap, none below its longest word; the console is widened when even
    # that does not fit.
    wide = console.options.update_width(1 << 16)      # rich clamps a measurement to the width it is given
    cols = renderable.columns
    sizes = [[Measurement.get(console, wide, c) for c in (col.header, *col.cells)] for col in cols]
    hi = [max(m.maximum for m in ms) for ms in sizes]
    lo = [h if col.no_wrap else max(m.minimum for m in ms) for col, h, ms in zip(cols, hi, sizes)]
    overhead = Measurement.get(console, wide, renderable).maximum - sum(hi)   # padding and borders
    budget = console.width - overhead
    if sum(hi) <= budget:
        console.print(renderable)
        return
    widths = list(hi)
    excess = sum(widths) - max(budget, sum(lo))
    while excess > 0:               # each column gives up room in proportion to how far it can wrap
        slack = [w - m for w, m in zip(widths, lo)]
        total = sum(slack)
        cut = [min(s_, max(1, excess * s_ // total)) if s_ else 0 for s_ in slack]
        while sum(cut) > excess:
            k = max(range(len(cut)), key=lambda j: cut[j])
            cut[k] -= 1
        widths = [w - c for w, c in zip(widths, cut)]
        excess -= sum(cut)
    for col, w in zip(cols, widths):
        col.width = w
    need = sum(widths) + overhead
    if need <= console.width:
        console.print(renderable)
        return
    width = console.width
    console.width = need                # console.print(width=) can only narrow
    try:
        console.print(renderable)
    finally:
        console.width = width


# -- analyze --------------------------------------------------------------------------------------
def report(an, console: Console, max_flows: int = 25, flows: list[Flow] | None = None) -> None:
    """`flows`: the candidates for "flows that matter" when the analysis was streamed."""
    from rich import box
    from rich.table import Table
    s = an.summary()
    i = an.info
    head = Table.grid(padding=(0, 2))
    head.add_row("capture", f"{i.path} ({i.format}{', gzip' if i.compressed else ''}, "
                 f"linktypes {','.join(map(str, i.linktypes)) or '-'})")
    if s["first_ts"] is not None:
        head.add_row("time", f"{clock(an.start, True)} → {clock(an.end, True)} ({s['duration']:.3f} s)")
    head.add_row("packets", f"{i.records} records, {i.tcp_segments} TCP segments, "
                 f"{len(an.flows) + an.streamed + an.not_kept} connections")
    if an.not_kept:
        forced = an.evicted.get("forced", 0)
        head.add_row("cap", f"{an.not_kept} half-open attempts over the tracking cap ({an.max_tracked}) are counted "
                     "in the findings, not listed"
                     + (f"; {forced} were forced out before their timers settled: findings about them may "
                        "differ from an uncapped run" if forced else ""))
    skipped = ", ".join(f"{k} {v}" for k, v in s["skipped"].items()) or "none"
    head.add_row("skipped", f"{s['skipped_total']} ({skipped})")
    if s.get("checksums"):
        note = "" if not s["checksums"].get("bad") else \
            " (bad ones still drive the states: a capture on the sending host with checksum offload looks " \
            "like this; --verify-checksums drops them)"
        head.add_row("checksums", ", ".join(f"{k} {v}" for k, v in sorted(s["checksums"].items())) + note)
    head.add_row("profile", f"{an.profile.name} (TIME_WAIT {an.profile.time_wait:g} s, "
                 f"fin_timeout {an.profile.fin_timeout:g} s)")
    for w in s["warnings"]:
        head.add_row("[yellow]warning[/]", w)
    show(console, head)
    console.print()

    ft = Table(title="Findings (most severe first)", box=box.SIMPLE_HEAVY, title_justify="left")
    for col in ("severity", "kind", "count", "when", "what"):
        ft.add_column(col)
    for a in an.findings:
        ft.add_row(f"[{SEV_STYLE[a.severity]}]{a.severity}[/]", a.kind, str(a.count), clock(a.ts), esc(a.message))
    if not an.findings:
        ft.add_row("", "[green]none[/]", "", "", "nothing abnormal found")
    show(console, ft)

    if an.streamed:
        console.print(f"[dim]streamed: {an.streamed:,} finished connections were reported and forgotten while "
                      f"reading (bounded memory); per-host piles are in the *_pile findings above.[/]")
        _flows_table(an, console, max_flows, rank_flows((flows or []) + an.flows))
        return
    show(console, piles_table(an, "Per-host state piles (peak held at once, and at capture end)",
                              every_state=True))

    _flows_table(an, console, max_flows, rank_flows(an.flows))


def _flows_table(an, console: Console, max_flows: int, interesting: list[Flow]) -> None:
    from rich import box
    from rich.table import Table
    fl = Table(title=f"Flows that matter ({len(interesting)} with findings"
               f"{f', first {max_flows}' if len(interesting) > max_flows else ''})",
               box=box.SIMPLE, title_justify="left")
    for col in ("id", "client", "server", "client state", "server state", "zeek", "findings"):
        fl.add_column(col)
    for f in interesting[:max_flows]:
        fl.add_row(str(f.id), esc(f.client), esc(f.server), f.conn.client.state.value, f.conn.server.state.value,
                   f"{conn_state(f)} {f.conn.history}", ", ".join(sorted({a.kind for a in f.anomalies})))
    show(console, fl)


# -- brief: the story on one screen (make demo) ----------------------------------------------------
def brief(an, console: Console, segments=None) -> None:
    """What a person wants first: the capture in four lines, the findings, the per-host piles, the flows
    that explain the findings grouped by what happened to them (one line per group, not one per flow),
    and one ladder -- the first connection named by the most severe finding. `segments(an, flows)`: the
    segments of those flows (render.report.flow_segments) for the ladder's arrows."""
    from rich import box
    from rich.table import Table
    i = an.info
    s = an.summary()
    head = Table.grid(padding=(0, 2))
    head.add_row("capture", f"{i.path} — {clock(an.start, True)} → {clock(an.end)} ({s['duration']:.3f} s)")
    head.add_row("read", capture_line(an))
    show(console, head)
    console.print()
    # one row per kind of finding (the same pile on two hosts is one problem): where, since when, and the
    # first one's message in full
    ft = Table(title="What went wrong (most severe first)", box=box.SIMPLE_HEAVY, title_justify="left")
    for col in ("severity", "kind", "where (count)", "first"):
        ft.add_column(col, no_wrap=True)
    ft.add_column("what (the first one)")
    by_kind: dict[str, list] = {}
    for a in an.findings:
        by_kind.setdefault(a.kind, []).append(a)
    for kind, items in by_kind.items():
        a = items[0]
        where = "\n".join(f"{x.host or '?'} ({x.count})" for x in items[:4]) + \
            (f"\n+{len(items) - 4} more" if len(items) > 4 else "")
        ft.add_row(f"[{SEV_STYLE[a.severity]}]{a.severity}[/]", kind, esc(where), clock(min(x.ts for x in items)),
                   esc(a.message))
    if not an.findings:
        ft.add_row("", "[green]none[/]", "", "", "nothing abnormal found")
    show(console, ft)
    if an.streamed:
        console.print(f"[dim]streamed: {an.streamed:,} finished connections were reported and forgotten while "
                      f"reading (bounded memory); piles and ladders need --no-stream.[/]")
        return
    show(console, piles_table(an, "Per-host piles (most held at once / at the end)"))
    groups = explain_groups(an)
    if groups:
        gt = Table(title="The connections behind them (grouped by what happened)", box=box.SIMPLE,
                   title_justify="left")
        for col in ("flows", "client → server", "ends (client / server)", "findings", "e.g."):
            gt.add_column(col)
        for (cli, srv, cs, ss, kinds), ids in groups[:8]:
            gt.add_row(str(len(ids)), esc(f"{cli} → {srv}"), f"{cs} / {ss}", ", ".join(kinds),
                       "flow " + ", ".join(map(str, ids[:3])) + (" …" if len(ids) > 3 else ""))
        show(console, gt)
        if len(groups) > 8:
            console.print(f"… and {len(groups) - 8} more groups (tcpfsm analyze lists every flow)")
    flow = _story_flow(an)
    if flow is not None:
        segs, more = (segments(an, [flow]).get(flow.id, ([], 0)) if segments else ([], 0))
        why = ", ".join(sorted({a.kind for a in flow.anomalies} | {a.kind for a in an.findings
                                                                   if flow.id in a.flows}))
        console.print(f"[bold]Ladder of flow {flow.id}[/] ({why}): client {flow.client} ↔ server {flow.server}",
                      highlight=False)
        console.print(ladder_text(flow, segs, more), highlight=False, markup=False, soft_wrap=True)


def piles_table(an, title: str, every_state: bool = False):
    """Per host, per state: the most sockets held at once / how many at the capture's end. Columns: every
    state netstat lists, or (`every_state=False`) those some host held."""
    from rich import box
    from rich.table import Table
    piles = Table(title=title, box=box.SIMPLE, title_justify="left")
    piles.add_column("host")
    peaks = an.occupancy.peaks()
    shown = [st for st in STATE_ORDER if st in LISTED and (every_state or any(k[1] is st for k in peaks))]
    for st in shown:
        piles.add_column(NETSTAT_NAME[st], justify="right")
    at_end = Counter((iv.host, iv.state) for iv in an.occupancy.at(an.end))
    for h in sorted({h for h, _ in peaks}):
        piles.add_row(h, *[f"{peaks[(h, st)][0]}/{at_end.get((h, st), 0)}" if (h, st) in peaks else ""
                           for st in shown])
    return piles


def explain_groups(an) -> list[tuple[tuple, list[int]]]:
    """The flows that findings name (their own, or an aggregate's members), grouped by client host, server
    address, end states and finding kinds; the groups of the most severe findings first, then the biggest."""
    kinds: dict[int, set] = {}
    worst: dict[str, int] = {}
    for f in an.flows:
        if f.anomalies:
            kinds.setdefault(f.id, set()).update(a.kind for a in f.anomalies)
            for a in f.anomalies:
                worst[a.kind] = min(worst.get(a.kind, 9), SEVERITY_ORDER.index(a.severity))
    for a in an.findings:
        worst[a.kind] = min(worst.get(a.kind, 9), SEVERITY_ORDER.index(a.severity))
        for fid in a.flows:
            kinds.setdefault(fid, set()).add(a.kind)
    groups: dict[tuple, list[int]] = {}
    for fid in sorted(kinds):
        f = an.find_flow(fid)
        if f is None:
            continue
        key = (f.client_ip, f.server, f.conn.client.state.value, f.conn.server.state.value,
               tuple(sorted(kinds[fid])))
        groups.setdefault(key, []).append(fid)
    return sorted(groups.items(), key=lambda kv: (min(worst[k] for k in kv[0][4]), -len(kv[1]), kv[1][0]))


def flows_that_explain(an) -> list[Flow]:
    """Every flow a finding names, in the order to show them: one of each group of `explain_groups`
    (most severe first), then a second of each, and so on -- the first few drawn tell different stories."""
    groups = [ids for _, ids in explain_groups(an)]
    out = []
    for k in range(max(map(len, groups), default=0)):
        out += [an.find_flow(ids[k]) for ids in groups if k < len(ids)]
    return out


def _story_flow(an):
    order = flows_that_explain(an)
    return order[0] if order else None


def ladder_text(flow: Flow, segments: list[tuple], more: int = 0, lane: int = 46) -> str:
    """A text sequence diagram: time, the client's state, an arrow per segment (flags, relative seq/ack,
    length), the server's state; a state is written on the row of the segment (or timer) that changed it.
    `segments`: (index, ts, role, flags, seq, ack, plen), as render.report.flow_segments gives them;
    without them, the segments that caused transitions."""
    if not segments:
        segments = [(t.packet, t.ts, *t.seg) for t in flow.transitions if t.seg and t.packet]
        segments = sorted({s[0]: s for s in segments}.values())
    base: dict[str, int] = {}
    for _, _, role, _, seq, _, _ in segments:
        base.setdefault(role, seq)
    changes: dict[int | None, list] = {}
    for t in flow.transitions:
        if not t.retracted:
            changes.setdefault(t.packet, []).append(t)
    rows: list[tuple] = [(seg[1], 0, seg) for seg in segments]
    drawn = {seg[0] for seg in segments}
    rows += [(t.ts, 1, t) for t in flow.transitions if not t.retracted and (t.packet is None or t.packet not in drawn)]
    rows.sort(key=lambda r: (r[0], r[1]))
    c0, s0 = flow.conn.client.initial.value, flow.conn.server.initial.value
    w = max(13, *(len(t.new.value) + 1 for t in flow.transitions))
    out = [f"{'':>10}  {c0:>{w}}  {'client':<{lane // 2}}{'server':>{lane - lane // 2}}  {s0}"]
    for k, (ts, kind, item) in enumerate(rows):
        if more and kind == 0 and k == 60:
            out.append(f"{'':>10}  {'':>{w}}  {f'… {more} segments …':^{lane}}")
        rel = f"+{(ts - flow.first_ts) / NS:.6f}"
        if kind == 0:
            idx, _, role, flags, seq, ack, plen = item
            other = "server" if role == "client" else "client"
            label = f" {flag_names(flags)} seq={(seq - base[role]) % (1 << 32)}"
            if flags & 0x10:
                label += f" ack={(ack - base.get(other, ack)) % (1 << 32)}"
            label += f" len={plen} "
            body = label.center(lane - 2, "─")
            arrow = ("─" + body + "▶") if role == "client" else ("◀" + body + "─")
            trs = changes.get(idx, [])
        else:
            arrow = f" ({item.cause}) ".center(lane, " ")
            trs = [item]
        cs = " ".join(t.new.value + ("?" if t.alt is not None else "") for t in trs if t.endpoint == "client")
        ss = " ".join(t.new.value + ("?" if t.alt is not None else "") for t in trs if t.endpoint == "server")
        out.append(f"{rel:>10}  {cs:>{w}}  {arrow}  {ss}".rstrip())
    return "\n".join(out)


# -- timeline -------------------------------------------------------------------------------------
def timeline_rows(flow: Flow) -> list[tuple]:
    """(ts, endpoint, old, new, packet, segment, cause, reason, rfc) for each transition."""
    return [(t.ts, t.endpoint, t.old.value, t.new.value + ("?" if t.alt is not None else ""), t.packet,
             seg_text(t.seg), t.cause,
             t.reason + (f" [or still {t.alt.value}: cannot be decided]" if t.alt is not None else "")
             + (f" [may have happened up to {(t.at - t.alt_before[0]) / 1e9:.3f} s earlier: its first copies were"
                " not seen, or it waited behind data]" if t.alt_before is not None else "")
             + (" [retracted: later evidence shows it never happened]" if t.retracted else ""), t.rfc)
            for t in flow.transitions]


def icmp_errors(flow: Flow) -> list[dict]:
    """The ICMP errors tied to the flow (its path record's `icmp`; none without path health)."""
    from ..path.flows import path_record
    rec = path_record(flow)
    return rec["icmp"] if rec else []


def timeline_text(flows: list[Flow], markdown: bool = False, tunnels: list[str] | None = None,
                  files: list[dict] | None = None) -> str:
    """`files`: the per-file table of several captures read as one (tcpfsm.capture.multi): packets are then
    named FILE:INDEX (the index in that file) beside the global #INDEX."""
    out = io.StringIO()
    for f in flows:
        c, s = f.conn.client, f.conn.server
        title = (f"flow {f.id}: client {f.client} ↔ server {f.server}"
                 f"{' (roles inferred)' if f.role_inferred else ''} — {conn_state(f)} {f.conn.history}, "
                 f"packets {c.packets}/{s.packets}, bytes {c.payload}/{s.payload}")
        if f.tunnels and tunnels:
            title += "; inside " + " | ".join(tunnels[i] for i in sorted(f.tunnels) if i < len(tunnels))
        if markdown:
            out.write(f"### {title}\n\n| time | endpoint | transition | packet | segment | cause | why |\n"
                      "|---|---|---|---|---|---|---|\n")
        else:
            out.write(title + "\n")
        lines = []
        for ts, ep, old, new, pkt, seg, cause, reason, rfc in timeline_rows(f):
            pk = f"#{pkt}" if pkt else "timer" if cause.startswith("timer") else "-"
            if pkt and files:
                from ..capture.multi import locate
                where = locate(files, pkt)
                if where is not None:
                    pk += f" ({os.path.basename(where[0])}:{where[1]})"
            mark = "" if rfc else " [not an RFC edge]"
            if markdown:
                lines.append((ts // 1000, 1, f"| {clock(ts)} | {ep} | {old} → {new} | {pk} | {seg} | {cause} | {reason}{mark} |\n"))
            else:
                arrow = "→"
                side = f"{ep:>6}"
                lines.append((ts // 1000, 1, f"  {clock(ts)}  {side}  {old:>12} {arrow} {new:<12}  {pk:>8}  {seg:<52}  {cause}: "
                                     f"{reason}{mark}\n"))
        for e in icmp_errors(f):        # ICMP errors quoting the flow's segments (tcpfsm/path/icmp.py), in time
            what = (f"icmp {e['name']} (type {e['type']} code {e['code']}) from {e['router']}"
                    + (f", next-hop MTU {e['mtu']}" if e["mtu"] else "")
                    + (f": a Linux socket gets {e['errno']}" if e["errno"] else ": path MTU lowered"))
            ts = int(round(e["ts"] * 1e6)) * 1000      # (the record's seconds hold µs; sorted by µs)
            lines.append((ts // 1000, 0, f"| {clock(ts)} | icmp | | #{e['packet']} | | {what} | |\n" if markdown else
                          f"  {clock(ts)}    icmp  {'':>12}   {'':<12}  {'#' + str(e['packet']):>8}  {what}\n"))
        lines.sort(key=lambda tl: tl[:2])             # (an error before the transition it causes)
        out.write("".join(text for _, _, text in lines))
        ends = (f"  end: client {c.state.value}{alt_mark(f.conn.alt_of(c))}, "
                f"server {s.state.value}{alt_mark(f.conn.alt_of(s))}")
        for ep in (c, s):
            pend = f.conn.pending(ep)
            if pend:
                ends += f"; {ep.role} → {pend[1].value} at {clock(pend[0])} ({ep.deadline_cause})"
        out.write(("\n" + ends.strip() + "\n\n") if markdown else ends + "\n")
        for a in f.anomalies:
            out.write(f"{'- ' if markdown else '  ! '}{a.severity} {a.kind}: {a.message}\n")
        out.write("\n")
    return out.getvalue()


# -- netstat --------------------------------------------------------------------------------------
def capture_line(an) -> str:
    """One line: what was read and what was skipped, by reason."""
    i = an.info
    skipped = sum(i.skipped.values())
    why = ", ".join(f"{k} {v}" for k, v in sorted(i.skipped.items()))
    sums = getattr(i, "checksums", None) or {}
    csum = ", ".join(f"{k} {v}" for k, v in sorted(sums.items()))
    summary = an.summary()      # counts the connections wherever they are (a Dask run's stay on the workers)
    dropped = summary.get("dropped_bad_checksum", 0)
    gone = getattr(an, "not_kept", 0)
    forced = an.evicted.get("forced", 0)
    cap = (f"{gone} half-open attempts over the tracking cap ({an.max_tracked}) counted in the findings, not listed"
           f"{f' ({forced} forced out before their timers settled: findings about them may differ)' if forced else ''}; "
           if gone else "")
    return (f"{i.records} records, {i.tcp_segments} TCP segments, {summary['flows']} connections; "
            f"{cap}"
            f"skipped {skipped}{f' ({why})' if why else ''}{'; truncated file' if i.truncated else ''}"
            f"{f'; TCP checksums: {csum}' if csum else ''}"
            f"{f'; {dropped} segments with a bad checksum dropped (--verify-checksums)' if dropped else ''}")


def netstat_text(snaps, include_queues: bool = True, header: str | None = None) -> str:
    out = io.StringIO()
    if header:
        out.write(f"# {header}\n")
    for snap in snaps:
        out.write(f"# at {clock(snap.at, True)} ({snap.at / NS:.6f})\n")
        out.write("Active Internet connections (servers and established)\n")
        out.write(f"{'Proto':<5} {'Recv-Q':>6} {'Send-Q':>6} {'Local Address':<45} {'Foreign Address':<45} State\n")
        host = None
        for r in snap.sockets:
            if r.host != host and len({x.host for x in snap.sockets}) > 1:
                out.write(f"# host {r.host}\n")
                host = r.host
            proto = "tcp6" if ":" in r.host else "tcp"
            out.write(f"{proto:<5} {0:>6} {0:>6} {r.local:<45} {r.remote:<45} {NETSTAT_NAME[r.state]}{alt_mark(r.alt)}\n")
        out.write("\n")
    return out.getvalue()


# -- states ---------------------------------------------------------------------------------------
def states_text(rows, host: str | None = None, by_host: bool = False, states=None, interval: float = 1.0) -> str:
    """Like `sar -n SOCK`: one line per sample, one column per state (netstat's spellings), a header, and
    an Average line. Counts are summed over the hosts (those of `host` alone when given); `by_host` prints
    one line per host per sample instead, with a host column, like `sar -n DEV` has IFACE."""
    shown = [st for st in STATE_ORDER if st in LISTED and (not states or st in states)]
    sub = interval < 1 or any(ts % NS for ts, _ in rows)
    lines: list[list[str]] = []
    total: Counter = Counter()
    for ts, per_host in rows:
        when = clock(ts) if sub else datetime.fromtimestamp(ts / NS).strftime("%H:%M:%S")
        if by_host:
            for h in sorted(per_host):
                lines.append([when, h, *[str(per_host[h].get(st, 0)) for st in shown]])
                total.update({(h, st): per_host[h].get(st, 0) for st in shown})
        else:
            cnt: Counter = Counter()
            for c in per_host.values():
                cnt.update(c)
            lines.append([when, *[str(cnt.get(st, 0)) for st in shown]])
            total.update({st: cnt.get(st, 0) for st in shown})
    n = max(len(rows), 1)
    if by_host:
        hosts = sorted({h for h, _ in total})
        avg = [["Average:", h, *[f"{total[(h, st)] / n:.2f}" for st in shown]] for h in hosts]
        head = ["time", "host", *[NETSTAT_NAME[st] for st in shown]]
    else:
        avg = [["Average:", *[f"{total[st] / n:.2f}" for st in shown]]]
        head = ["time", *[NETSTAT_NAME[st] for st in shown]]
    table = [head, *lines, *avg]
    widths = [max(len(r[k]) for r in table) for k in range(len(head))]
    left = 2 if by_host else 1                      # time (and host) left-aligned, counts right-aligned
    out = io.StringIO()
    title = f"# state counts{f' on {host}' if host else ' summed over all hosts' if not by_host else ' per host'}"
    out.write(title + (f", every {interval:g} s" if interval else "") + "\n")
    for r in table:
        cells = [c.ljust(widths[k]) if k < left else c.rjust(widths[k]) for k, c in enumerate(r)]
        out.write("  ".join(cells).rstrip() + "\n")
    return out.getvalue()


def states_csv(rows, states=None) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    shown = [st for st in STATE_ORDER if st in LISTED and (not states or st in states)]
    w.writerow(["ts", "host", *[st.value for st in shown]])
    for ts, per_host in rows:
        for h in sorted(per_host):
            w.writerow([f"{ts / NS:.6f}", h, *[per_host[h].get(st, 0) for st in shown]])
    return out.getvalue()


CSV_FIELDS = ["id", "client_ip", "client_port", "server_ip", "server_port", "role_inferred", "first_ts",
              "last_ts", "packets_client", "packets_server", "bytes_client", "bytes_server", "state_client",
              "state_server", "conn_state", "history", "anomalies"]


def _csv_line(row: list) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(row)
    return out.getvalue()


def flows_csv_header() -> str:
    return _csv_line(CSV_FIELDS)


def flow_csv_row(f: Flow) -> str:
    return _csv_line(_csv_fields(f))


def _csv_fields(f: Flow) -> list:
    c, s = f.conn.client, f.conn.server
    return [f.id, f.client_ip, f.client_port, f.server_ip, f.server_port, int(f.role_inferred),
            f"{f.first_ts / NS:.6f}", f"{f.last_ts / NS:.6f}", c.packets, s.packets, c.payload,
            s.payload, c.state.value, s.state.value, conn_state(f), f.conn.history,
            ";".join(sorted({a.kind for a in f.anomalies}))]


def flows_csv(an) -> str:
    return flows_csv_header() + "".join(flow_csv_row(f) for f in an.flows)


def write_flows_csv(flows, out, header: bool = True, rows_per_chunk: int = 4096) -> None:
    """`flows_csv` into the byte sink `out` (tcpfsm.render.output.Output): one csv writer over one reused
    text buffer, handed on every `rows_per_chunk` rows."""
    buf = io.StringIO()
    w = csv.writer(buf)
    if header:
        w.writerow(CSV_FIELDS)
    n = 0
    for f in flows:
        w.writerow(_csv_fields(f))
        n += 1
        if n == rows_per_chunk:
            out.text(buf.getvalue())
            buf.seek(0)
            buf.truncate()
            n = 0
    out.text(buf.getvalue())


SEVERITY_ORDER = ["critical", "high", "medium", "low", "info"]


def rank_flows(flows: list[Flow]) -> list[Flow]:
    """Flows with findings, most severe first, then oldest."""
    order = SEVERITY_ORDER
    return sorted((f for f in flows if f.anomalies),
                  key=lambda f: (min(order.index(a.severity) for a in f.anomalies), f.first_ts))
