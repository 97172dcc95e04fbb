"""The incident report: one self-contained Markdown or HTML file to attach to a post-mortem.

Owns the report's layout only: capture facts (skipped counts included), the
ranked findings, per-host state piles, a chart of state counts over time
(inline SVG in HTML), and the ladders of the connections that matter. Every
number comes from an `Analysis`; nothing here decides anything.
"""
from __future__ import annotations

import html
from collections import Counter

from ..detect.occupancy import LISTED
from ..fsm import NETSTAT_NAME, State
from .text import capture_line, clock, rank_flows, timeline_text

NS = 1_000_000_000
SHOWN = [s for s in State if s in LISTED]
COLORS = {State.SYN_SENT: "#8e44ad", State.SYN_RECEIVED: "#c0392b", State.ESTABLISHED: "#27ae60",
          State.FIN_WAIT_1: "#d35400", State.FIN_WAIT_2: "#e67e22", State.CLOSE_WAIT: "#e74c3c",
          State.CLOSING: "#7f8c8d", State.LAST_ACK: "#f1c40f", State.TIME_WAIT: "#2980b9"}


def _samples(an, points: int = 240) -> tuple[float, list[tuple[int, Counter]]]:
    """State counts summed over hosts at up to `points` instants across the capture."""
    span = max(an.end - an.start, 1)
    step = max(span // points, 1)
    rows = an.occupancy.counts(an.start, an.end, step)
    out = []
    for t, per_host in rows:
        total = Counter()
        for cnt in per_host.values():
            total.update(cnt)
        out.append((t, total))
    return step / NS, out


def svg_chart(an, width: int = 900, height: int = 260) -> str:
    """State counts over time (all hosts), one polyline per state that occurs."""
    _, rows = _samples(an)
    if not rows:
        return ""
    states = [s for s in SHOWN if any(c.get(s) for _, c in rows)]
    top = max([c.get(s, 0) for _, c in rows for s in states] + [1])
    t0, t1 = rows[0][0], max(rows[-1][0], rows[0][0] + 1)
    pad_l, pad_b, pad_t = 50, 30, 10
    w, h = width - pad_l - 150, height - pad_b - pad_t

    def xy(t: int, v: int) -> str:
        return f"{pad_l + (t - t0) / (t1 - t0) * w:.1f},{pad_t + h - v / top * h:.1f}"

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11">',
             f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{pad_l + w}" y2="{pad_t + h}" stroke="#555"/>',
             f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{pad_t + h}" stroke="#555"/>',
             f'<text x="{pad_l - 5}" y="{pad_t + 10}" text-anchor="end">{top}</text>',
             f'<text x="{pad_l - 5}" y="{pad_t + h}" text-anchor="end">0</text>',
             f'<text x="{pad_l}" y="{height - 8}">{html.escape(clock(t0))}</text>',
             f'<text x="{pad_l + w}" y="{height - 8}" text-anchor="end">{html.escape(clock(t1))}</text>']
    for k, s in enumerate(states):
        pts = " ".join(xy(t, c.get(s, 0)) for t, c in rows)
        parts.append(f'<polyline fill="none" stroke="{COLORS[s]}" stroke-width="1.5" points="{pts}"/>')
        parts.append(f'<rect x="{pad_l + w + 15}" y="{pad_t + 14 * k}" width="10" height="10" fill="{COLORS[s]}"/>')
        parts.append(f'<text x="{pad_l + w + 30}" y="{pad_t + 9 + 14 * k}">{NETSTAT_NAME[s]}</text>')
    parts.append("</svg>")
    return "".join(parts)


def markdown(an, max_flows: int = 10) -> str:
    i = an.info
    out = [f"# TCP state report: {i.path}", "",
           f"- capture: {i.format}{', gzip' if i.compressed else ''}, link types "
           f"{', '.join(map(str, i.linktypes)) or '-'}",
           f"- time: {clock(an.start, True)} → {clock(an.end, True)} ({(an.end - an.start) / NS:.3f} s)",
           f"- {capture_line(an)}",
           f"- profile: {an.profile.name} (TIME_WAIT {an.profile.time_wait:g} s, fin_timeout "
           f"{an.profile.fin_timeout:g} s)"]
    for w in an.summary()["warnings"]:
        out.append(f"- warning: {w}")
    out += ["", "## Findings (most severe first)", ""]
    if an.findings:
        out += ["| severity | kind | count | when | what |", "|---|---|---|---|---|"]
        for a in an.findings:
            out.append(f"| {a.severity} | {a.kind} | {a.count} | {clock(a.ts)} | {_cell(a.message)} |")
    else:
        out.append("Nothing abnormal found.")
    out += ["", "## Per-host state piles (most held at once / at capture end)", "",
            "| host | " + " | ".join(NETSTAT_NAME[s] for s in SHOWN) + " |",
            "|---|" + "---|" * len(SHOWN)]
    peaks = an.occupancy.peaks()
    at_end = Counter((iv.host, iv.state) for iv in an.occupancy.at(an.end))
    for h in sorted({h for h, _ in peaks}):
        cells = [f"{peaks[(h, s)][0]}/{at_end.get((h, s), 0)}" if (h, s) in peaks else "" for s in SHOWN]
        out.append(f"| {h} | " + " | ".join(cells) + " |")
    flows = rank_flows(an.flows)[:max_flows]
    out += ["", f"## Connections that matter ({len(flows)} shown)", ""]
    out.append(timeline_text(flows, markdown=True, tunnels=getattr(i, "tunnels", None)) if flows
               else "None.")
    return "\n".join(out) + "\n"


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def html_report(an, max_flows: int = 10) -> str:
    """The Markdown report's content as a standalone HTML page, with the state chart inline."""
    md = markdown(an, max_flows)
    body = []
    table: list[str] = []

    def flush():
        if table:
            rows = [r.strip().strip("|").split(" | ") for r in table if not set(r.replace("|", "").strip()) <= {"-"}]
            head, rest = rows[0], rows[1:]
            body.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>" +
                        "".join("<tr>" + "".join(f"<td>{html.escape(c.replace(chr(92) + '|', '|'))}</td>"
                                                 for c in r) + "</tr>" for r in rest) + "</table>")
            table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("### "):
            body.append(f"<h3>{html.escape(line[4:])}</h3>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
            if line.startswith("## Per-host"):
                body.append("<h3>State counts over time (all hosts)</h3>" + svg_chart(an))
        elif line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("- "):
            body.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    flush()
    style = ("body{font-family:sans-serif;max-width:1400px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}"
             "th{background:#f3f3f3}h1{font-size:22px}h2{font-size:18px;margin-top:1.5em}h3{font-size:15px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(an.info.path)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
