"""Inline SVG pictures for the HTML report: a host's state counts over time, a host pair's RTT and
retransmissions over time, a connection's sequence diagram (Wireshark's flow graph, with each endpoint's states beside its line), and the graph of observed
transitions. Plain strings, no library, no script needed to read them (hover values are SVG <title>s;
the report's small script only echoes them into a visible read-out).

Owns drawing only: every number comes from its caller.
"""
from __future__ import annotations

import math
from datetime import datetime
from html import escape

from ..fsm import NETSTAT_NAME, State
from .text import flag_names

NS = 1_000_000_000
COLORS = {State.SYN_SENT: "#8e44ad", State.SYN_RECEIVED: "#c0392b", State.ESTABLISHED: "#27ae60",
          State.FIN_WAIT_1: "#d35400", State.FIN_WAIT_2: "#e67e22", State.CLOSE_WAIT: "#e74c3c",
          State.CLOSING: "#7f8c8d", State.LAST_ACK: "#b7950b", State.TIME_WAIT: "#2980b9",
          State.LISTEN: "#34495e", State.CLOSED: "#95a5a6"}


def _e(s) -> str:
    return escape(str(s), quote=True)


def nice_step(span: float, ticks: int = 6) -> float:
    """A round step (1, 2, 5 x 10^k) giving about `ticks` ticks over `span`."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def time_ticks(t0: int, t1: int, ticks: int = 6) -> list[tuple[int, str]]:
    """Ticks on a real clock: round seconds (or ms, or minutes) with HH:MM:SS[.fff] labels."""
    span = (t1 - t0) / NS
    steps = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900,
             1800, 3600, 7200, 21600, 43200, 86400]
    step = next((s for s in steps if span / s <= ticks), steps[-1])
    step_ns = int(step * NS)
    first = -(-t0 // step_ns) * step_ns
    fmt = "%H:%M:%S" if step >= 1 else "%H:%M:%S.%f"
    out = []
    t = first
    while t <= t1 and len(out) < 50:
        label = datetime.fromtimestamp(t / NS).strftime(fmt)
        if step < 1:
            label = label[:-3] if step < 0.01 else label[:-4]
        out.append((t, label))
        t += step_ns
    return out


def host_chart(host: str, rows: list[tuple[int, dict]], t0: int, t1: int, width: int = 880,
               height: int = 230) -> str:
    """One host's state counts over time: a step line per state that occurs, a real time axis, a count
    axis, and per sample an invisible band whose <title> gives every count then (hover)."""
    states = [s for s in COLORS if any(c.get(s) for _, c in rows)]
    top = max([sum(c.values()) and max(c.values()) for _, c in rows] + [1])
    ystep = max(1, int(nice_step(top, 4)))
    ymax = -(-top // ystep) * ystep
    pl, pr, pt, pb = 52, 130, 14, 34
    w, h = width - pl - pr, height - pt - pb
    t1 = max(t1, t0 + 1)

    def x(t: int) -> float:
        return pl + (t - t0) / (t1 - t0) * w

    def y(v: float) -> float:
        return pt + h - v / ymax * h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-host="{_e(host)}" '
           f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-label="state counts on {_e(host)}">',
           f'<text x="{pl}" y="11" class="ct">{_e(host)}: sockets per state (netstat -nat)</text>']
    for v in range(0, ymax + 1, ystep):
        out.append(f'<line x1="{pl}" x2="{pl + w}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>'
                   f'<text x="{pl - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v}</text>')
    for t, label in time_ticks(t0, t1):
        out.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{pt}" y2="{pt + h}" class="grid"/>'
                   f'<text x="{x(t):.1f}" y="{pt + h + 16}" text-anchor="middle">{_e(label)}</text>')
    out.append(f'<line x1="{pl}" x2="{pl + w}" y1="{pt + h}" y2="{pt + h}" class="axis"/>'
               f'<line x1="{pl}" x2="{pl}" y1="{pt}" y2="{pt + h}" class="axis"/>')
    for k, s in enumerate(states):
        pts = []
        for i, (t, c) in enumerate(rows):
            v = c.get(s, 0)
            nxt = rows[i + 1][0] if i + 1 < len(rows) else t1
            pts.append(f"{x(t):.1f},{y(v):.1f} {x(nxt):.1f},{y(v):.1f}")
        out.append(f'<polyline fill="none" stroke="{COLORS[s]}" stroke-width="1.8" points="{" ".join(pts)}"/>')
        ly = pt + 4 + 15 * k
        out.append(f'<rect x="{pl + w + 12}" y="{ly}" width="10" height="10" fill="{COLORS[s]}"/>'
                   f'<text x="{pl + w + 27}" y="{ly + 9}">{NETSTAT_NAME[s]}</text>')
    for i, (t, c) in enumerate(rows):                   # hover bands: one per sample
        nxt = rows[i + 1][0] if i + 1 < len(rows) else t1
        vals = ", ".join(f"{NETSTAT_NAME[s]} {c[s]}" for s in states if c.get(s)) or "nothing held"
        when = datetime.fromtimestamp(t / NS).strftime("%H:%M:%S.%f")[:-3]
        out.append(f'<rect class="hov" x="{x(t):.1f}" y="{pt}" width="{max(x(nxt) - x(t), 0.5):.1f}" '
                   f'height="{h}"><title>{_e(host)} at {when}: {_e(vals)}</title></rect>')
    out.append(f'<text x="{pl}" y="{height - 3}" class="readout"></text></svg>')
    return "".join(out)


SIDE_COLORS = {"client": "#1f6feb", "server": "#d35400"}


def pair_chart(client: str, server: str, step: int, bins: list[dict], t0: int, t1: int, width: int = 880) -> str:
    """One host pair's path over time, two panels on one real time axis: above, the RTT samples (ms) per
    interval and direction -- a dot at their median, a whisker from the least to the most, a line through
    the medians; below, the retransmitted segments per interval, the client's upward, the server's downward,
    each bar carrying its count (`data-dir`, `data-count`). An invisible band per interval with anything in
    it holds a <title> with its values (hover). `bins`: tcpfsm.render.report.pair_bins."""
    pl, pr, pt = 52, 150, 18
    h1, gap, h2, pb = 120, 30, 90, 34
    height = pt + h1 + gap + h2 + pb
    w = width - pl - pr
    t1 = max(t1, t0 + 1)
    ms = "rtt_client", "rtt_server"
    top = max([d[k][3] for d in bins for k in ms if k in d] + [0.001])
    ystep = nice_step(top, 4)
    ymax = math.ceil(top / ystep - 1e-9) * ystep
    rtop = max([d.get(k, 0) for d in bins for k in ("retx_client", "retx_server")] + [1])
    rstep = max(1, int(nice_step(rtop, 2)))
    rmax = -(-rtop // rstep) * rstep
    y2 = pt + h1 + gap + h2 / 2                 # the retransmission panel's zero line

    def x(t: int) -> float:
        return pl + (t - t0) / (t1 - t0) * w

    def y(v: float) -> float:
        return pt + h1 - v / ymax * h1

    label = f"{client}-{server}"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart pair" data-pair="{_e(label)}" '
           f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
           f'aria-label="RTT and retransmissions between {_e(client)} and {_e(server)}">',
           f'<text x="{pl}" y="12" class="ct">RTT (ms, ACKs by Karn\'s rule)</text>',
           f'<text x="{pl}" y="{pt + h1 + gap - 6}" class="ct">retransmitted segments per '
           f'{_e(_dur(step))}</text>']
    k = 0
    while k * ystep <= ymax + 1e-9:
        v = k * ystep
        out.append(f'<line x1="{pl}" x2="{pl + w}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>'
                   f'<text x="{pl - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
        k += 1
    for v in range(-rmax, rmax + 1, rstep):
        yy = y2 - v / rmax * (h2 / 2)
        out.append(f'<line x1="{pl}" x2="{pl + w}" y1="{yy:.1f}" y2="{yy:.1f}" class="grid"/>'
                   f'<text x="{pl - 6}" y="{yy + 4:.1f}" text-anchor="end">{abs(v)}</text>')
    bottom = pt + h1 + gap + h2
    for t, lab in time_ticks(t0, t1):
        out.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{pt}" y2="{pt + h1}" class="grid"/>'
                   f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{pt + h1 + gap}" y2="{bottom}" class="grid"/>'
                   f'<text x="{x(t):.1f}" y="{bottom + 16}" text-anchor="middle">{_e(lab)}</text>')
    out.append(f'<line x1="{pl}" x2="{pl + w}" y1="{pt + h1}" y2="{pt + h1}" class="axis"/>'
               f'<line x1="{pl}" x2="{pl + w}" y1="{y2}" y2="{y2}" class="axis"/>'
               f'<line x1="{pl}" x2="{pl}" y1="{pt}" y2="{pt + h1}" class="axis"/>'
               f'<line x1="{pl}" x2="{pl}" y1="{pt + h1 + gap}" y2="{bottom}" class="axis"/>')
    bw = max(step / (t1 - t0) * w - 1, 1.0)
    for side in ("client", "server"):
        col = SIDE_COLORS[side]
        pts = []
        marks = []
        for d in bins:
            cx = x(d["start"] + step / 2) + (-1.5 if side == "client" else 1.5)    # both sides visible
            st = d.get("rtt_" + side)
            if st:
                n, lo, med, hi = st
                pts.append(f"{cx:.1f},{y(med):.1f}")
                if hi > lo:
                    marks.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(lo):.1f}" y2="{y(hi):.1f}"/>')
                marks.append(f'<circle cx="{cx:.1f}" cy="{y(med):.1f}" r="2.2"/>')
            n = d.get("retx_" + side)
            if n:
                hgt = n / rmax * (h2 / 2)
                top_y = y2 - hgt if side == "client" else y2
                marks.append(f'<rect class="bar" data-dir="{side}" data-count="{n}" x="{x(d["start"]):.1f}" '
                             f'y="{top_y:.1f}" width="{bw:.1f}" height="{hgt:.1f}"/>')
        if len(pts) > 1:
            out.append(f'<polyline fill="none" stroke="{col}" stroke-width="1.2" stroke-opacity=".6" '
                       f'points="{" ".join(pts)}"/>')
        out.append(f'<g class="{side}" fill="{col}" stroke="{col}">{"".join(marks)}</g>')
    for j, (side, what) in enumerate((("client", f"{client}'s data, ACKed by {server}"),
                                      ("server", f"{server}'s data, ACKed by {client}"))):
        ly = pt + 4 + 30 * j
        out.append(f'<rect x="{pl + w + 12}" y="{ly}" width="10" height="10" fill="{SIDE_COLORS[side]}"/>'
                   f'<text x="{pl + w + 27}" y="{ly + 9}">{side}</text>'
                   f'<text x="{pl + w + 27}" y="{ly + 22}" class="muted">{"sent ↑" if side == "client" else "sent ↓"}'
                   f'</text>')
    for d in bins:                                  # hover bands: one per interval with anything in it
        when = datetime.fromtimestamp(d["start"] / NS).strftime("%H:%M:%S.%f")[:-3]
        parts = []
        for side, who in (("client", client), ("server", server)):
            st = d.get("rtt_" + side)
            if st:
                n, lo, med, hi = st
                parts.append(f"RTT of {who}'s data: {n} sample{'s' if n > 1 else ''}, median {med:.3f} ms "
                             f"({lo:.3f}–{hi:.3f})")
        parts.append(f"retransmissions {client} → {server}: {d.get('retx_client', 0)}, "
                     f"{server} → {client}: {d.get('retx_server', 0)}")
        out.append(f'<rect class="hov" x="{x(d["start"]):.1f}" y="{pt}" width="{max(bw, 0.5):.1f}" '
                   f'height="{bottom - pt}"><title>{when} (+{_e(_dur(step))}): {_e("; ".join(parts))}</title></rect>')
    out.append(f'<text x="{pl}" y="{height - 3}" class="readout"></text></svg>')
    return "".join(out)


def _dur(step_ns: int) -> str:
    s = step_ns / NS
    return f"{s:g} s" if s >= 1 else f"{s * 1e3:g} ms" if s >= 1e-3 else f"{s * 1e6:g} µs"


def sequence_diagram(flow, segments: list[tuple], more: int = 0) -> str:
    """Wireshark's flow graph for one connection: the client and server as vertical lines, one arrow per
    segment (flags, relative seq/ack, length), each endpoint's new state written beside its own line at
    every transition, timers marked where they fire. `segments`: (index, ts, role, flags, seq, ack, plen)
    in capture order; `more`: segments left out in the middle (drawn as a gap)."""
    if not segments:                    # the capture could not be read again (stdin): the causing segments
        segments = sorted({t.packet: (t.packet, t.ts, *t.seg) for t in flow.transitions
                           if t.seg and t.packet}.values())
    base = {}
    for _, _, role, flags, seq, _, _ in segments:          # relative numbers, as Wireshark shows them
        base.setdefault(role, seq)
    by_packet: dict[int, list] = {}
    timers = []
    for t in flow.transitions:
        if t.packet is not None:
            by_packet.setdefault(t.packet, []).append(t)
        else:
            timers.append(t)
    rows: list[tuple] = []          # (ts, order, kind, payload)
    for k, seg in enumerate(segments):
        rows.append((seg[1], 0, k, "seg", seg))
    seen = {s[0] for s in segments}
    for t in flow.transitions:       # transitions whose packet is not drawn (left out, or not re-read)
        if t.packet is None or t.packet not in seen:
            rows.append((t.ts, 1, 0, "tr", t))
    for ep in (flow.conn.client, flow.conn.server):    # timers still running when the capture ended
        pend = flow.conn.pending(ep)
        if pend:
            rows.append((pend[0], 2, 0, "pending", (ep.role, pend[1], ep.deadline_cause)))
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    if more:
        mid = next((i for i, r in enumerate(rows) if r[3] == "seg" and r[2] == 60), None)
        if mid is not None:
            rows.insert(mid, (rows[mid][0], 0, -1, "gap", more))
    t0 = flow.first_ts
    row_h, top = 22, 58
    xc, xs, width = 330, 730, 1060
    height = top + row_h * (len(rows) + 1) + 10
    cl = f"{flow.client}"
    sv = f"{flow.server}"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="seq" data-flow="{flow.id}" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" role="img" aria-label="sequence diagram of flow {flow.id}">',
           f'<text x="{xc}" y="16" text-anchor="middle" class="ep">client {_e(cl)}</text>',
           f'<text x="{xs}" y="16" text-anchor="middle" class="ep">server {_e(sv)}</text>',
           '<text x="6" y="16" class="muted">time (s)</text>',
           f'<text x="{xc - 14}" y="34" text-anchor="end" class="st">{flow.conn.client.initial.value}</text>',
           f'<text x="{xs + 14}" y="34" class="st">{flow.conn.server.initial.value}</text>',
           f'<line x1="{xc}" x2="{xc}" y1="40" y2="{height - 8}" class="life"/>',
           f'<line x1="{xs}" x2="{xs}" y1="40" y2="{height - 8}" class="life"/>']
    for i, (ts, _, _, kind, item) in enumerate(rows):
        y = top + row_h * i
        if kind == "gap":
            out.append(f'<text x="{(xc + xs) // 2}" y="{y + 4}" text-anchor="middle" class="muted">'
                       f'… {item} segments not drawn …</text>')
            continue
        if kind == "pending":
            role, state, cause = item
            x, anchor = (xc - 14, "end") if role == "client" else (xs + 14, "start")
            out.append(f'<text x="6" y="{y + 4}" class="muted">{(ts - t0) / NS:.6f}</text>'
                       f'<circle cx="{xc if role == "client" else xs}" cy="{y}" r="4" class="tmark pend"/>'
                       f'<text x="{x}" y="{y + 4}" text-anchor="{anchor}" class="st timer"><title>{role}: '
                       f'{_e(state.value)} when {_e(cause)} fires, after the capture ended</title>'
                       f'→ {_e(state.value)} ({_e(cause)})</text>')
            continue
        out.append(f'<text x="6" y="{y + 4}" class="muted">{(ts - t0) / NS:.6f}</text>')
        if kind == "seg":
            idx, _, role, flags, seq, ack, plen = item
            a, b = (xc, xs) if role == "client" else (xs, xc)
            other = "server" if role == "client" else "client"
            rs = (seq - base.get(role, seq)) % (1 << 32)
            ra = (ack - base.get(other, ack)) % (1 << 32) if flags & 0x10 else 0
            label = f"{flag_names(flags)} seq={rs}" + (f" ack={ra}" if flags & 0x10 else "") + f" len={plen}"
            cls = "rst" if flags & 0x04 else "syn" if flags & 0x03 else "data" if plen else "ack"
            tip = f"#{idx} {role} → {other}: {flag_names(flags)} seq {seq} ack {ack} len {plen}"
            d = 7 if b > a else -7
            out.append(f'<g class="{cls}"><title>{_e(tip)}</title>'
                       f'<line x1="{a}" y1="{y}" x2="{b - d}" y2="{y}"/>'
                       f'<path d="M{b},{y} l{-d},-4 l0,8 z"/>'
                       f'<text x="{(a + b) / 2}" y="{y - 4}" text-anchor="middle">{_e(label)}</text></g>')
            for t in by_packet.get(idx, ()):
                out.append(_state_label(t, xc, xs, y))
        else:
            out.append(_state_label(item, xc, xs, y, timer=item.packet is None))
    out.append("</svg>")
    return "".join(out)


def _state_label(t, xc: int, xs: int, y: int, timer: bool = False) -> str:
    """The endpoint's new state beside its own line (left of the client's, right of the server's)."""
    x, anchor = (xc - 14, "end") if t.endpoint == "client" else (xs + 14, "start")
    name = t.new.value + ("?" if t.alt is not None else "")
    extra = f" ({t.cause})" if timer or t.cause.startswith(("timer", "inferred")) else ""
    cls = "st timer" if timer else "st" + ("" if t.rfc else " nonrfc") + (" retracted" if t.retracted else "")
    tip = f"{t.endpoint}: {t.old.value} → {t.new.value} — {t.cause}: {t.reason}"
    mark = (f'<circle cx="{xc if t.endpoint == "client" else xs}" cy="{y}" r="4" class="tmark"/>' if timer else "")
    return (f'<g>{mark}<text x="{x}" y="{y + 4}" text-anchor="{anchor}" class="{cls}">'
            f'<title>{_e(tip)}</title>{_e(name + extra)}</text></g>')


# Where each state sits in the observed-transition picture: the RFC 9293 figure's layout.
_POS = {"CLOSED": (380, 40), "LISTEN": (380, 120), "SYN_RECEIVED": (170, 200), "SYN_SENT": (590, 200),
        "ESTABLISHED": (380, 280), "FIN_WAIT_1": (170, 370), "CLOSE_WAIT": (590, 370),
        "FIN_WAIT_2": (100, 460), "CLOSING": (300, 460), "LAST_ACK": (590, 460), "TIME_WAIT": (200, 540)}


def transition_graph_svg(g) -> str:
    """The observed-transition graph: states placed as in the RFC figure, an edge per transition seen,
    its width by count, labelled with the count; edges not in the RFC graph dashed red."""
    width, height = 760, 590
    top = max([d["count"] for _, _, d in g.edges(data=True)] + [1])
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="tgraph" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" role="img" aria-label="observed transitions">',
           '<defs><marker id="arr" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="10" markerHeight="10" '
           'markerUnits="userSpaceOnUse" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker>'
           '<marker id="arrx" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="10" markerHeight="10" '
           'markerUnits="userSpaceOnUse" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#c0392b"/></marker></defs>']
    extra = iter([(680, 40 + 50 * k) for k in range(20)])
    pos = dict(_POS)
    for n in g.nodes:
        if n not in pos:
            pos[n] = next(extra)
    for a, b, d in g.edges(data=True):
        (x1, y1), (x2, y2) = pos[a], pos[b]
        sw = 1 + 4 * math.sqrt(d["count"] / top)
        cls = "e" if d.get("rfc", True) else "e nonrfc"
        tip = f"{a} → {b}: {d['count']} (client {d.get('client', 0)}, server {d.get('server', 0)})" \
              f"{'' if d.get('rfc', True) else ' — not an RFC 9293 edge'}; causes {d.get('causes', '')}"
        if a == b:
            path = f"M{x1 - 10},{y1 - 14} C{x1 - 40},{y1 - 60} {x1 + 40},{y1 - 60} {x1 + 10},{y1 - 14}"
            lx, ly = x1, y1 - 52
        else:
            dx, dy = x2 - x1, y2 - y1
            L = math.hypot(dx, dy) or 1
            ux, uy = dx / L, dy / L
            bend = 18 if (b, a) in g.edges else 0               # two directions: two arcs
            sx, sy = x1 + ux * 44, y1 + uy * 16
            ex, ey = x2 - ux * 44, y2 - uy * 16
            mx, my = (sx + ex) / 2 - uy * bend, (sy + ey) / 2 + ux * bend
            path = f"M{sx:.1f},{sy:.1f} Q{mx:.1f},{my:.1f} {ex:.1f},{ey:.1f}"
            lx, ly = mx, my
        marker = "arr" if d.get("rfc", True) else "arrx"
        out.append(f'<g class="{cls}"><title>{_e(tip)}</title><path d="{path}" stroke-width="{sw:.1f}" '
                   f'fill="none" marker-end="url(#{marker})"/><text x="{lx:.1f}" y="{ly:.1f}" '
                   f'text-anchor="middle" class="cnt">{d["count"]}</text></g>')
    for n, (x, y) in pos.items():
        if n not in g.nodes:
            continue
        out.append(f'<g class="n"><rect x="{x - 62}" y="{y - 13}" width="124" height="26" rx="6"/>'
                   f'<text x="{x}" y="{y + 4}" text-anchor="middle">{_e(n)}</text></g>')
    out.append("</svg>")
    return "".join(out)
