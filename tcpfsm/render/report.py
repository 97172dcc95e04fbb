"""The incident report: one self-contained Markdown or HTML file to attach to a post-mortem.

Owns the report's layout only: capture facts (skipped counts included), the
ranked findings, per-host state piles and state counts over time, path health
per host pair (the `paths` view's rows; in HTML, RTT and retransmissions over
time), and the ladders (HTML: sequence diagrams) of the connections that
matter. Every number comes from an `Analysis`, or from reading the capture again
for what it did not keep (the drawn flows' segments; the drawn host pairs' RTT
samples and retransmissions, the path kernel run on their segments alone);
nothing here decides anything.
"""
from __future__ import annotations

import html
from collections import Counter

from ..detect.occupancy import LISTED
from ..fsm import NETSTAT_NAME, State
from ..detect.zeek import conn_state
from .text import capture_line, clock, flows_that_explain, timeline_text

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
    if getattr(an, "path", None) is not None:
        from ..path.views import PATHS_HEAD, PATHS_NOTE, path_cells, path_pairs
        pairs = path_pairs(an)
        out += ["", f"## Path health per host pair (busiest first; {PATHS_NOTE})", "",
                "| " + " | ".join(PATHS_HEAD) + " |", "|---|---|" + "---:|" * (len(PATHS_HEAD) - 2)]
        out += ["| " + " | ".join(path_cells(p)) + " |" for p in pairs[:PAIRS_LISTED]]
        if len(pairs) > PAIRS_LISTED:
            out.append(f"\n… and {len(pairs) - PAIRS_LISTED} more pairs (`tcpfsm paths`).")
    named = flows_that_explain(an)              # every flow a finding names (as the HTML report), one story each first
    flows = named[:max_flows]
    out += ["", f"## Connections that matter ({len(flows)} of {len(named)} shown)", ""]
    out.append(timeline_text(flows, markdown=True, tunnels=getattr(i, "tunnels", None)) if flows
               else "None.")
    return "\n".join(out) + "\n"


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


HOSTS_DRAWN = 12            # host charts drawn; the other hosts are listed with their peaks
HOSTS_LISTED = 500
FLOWS_LISTED = 2000
PAIRS_DRAWN = 8             # host pairs drawn with RTT and retransmission charts; the others are listed
PAIRS_LISTED = 500
FINDINGS_LISTED = 1000         # flows listed (not drawn) after the diagrams; the rest counted
SEG_HEAD, SEG_TAIL = 60, 20  # segments drawn per sequence diagram: the first and the last ones


def html_report(an, max_flows: int = 10) -> str:
    """The incident report as one self-contained HTML page (inline CSS, SVG and a few lines of script;
    nothing fetched): summary up front, findings linking to their evidence, per-host state-count charts
    (busiest first), a sequence diagram for each connection that matters (the rest listed), the graph of
    observed transitions, and the capture's facts. Its size is bounded whatever the capture: at most
    HOSTS_DRAWN charts, `max_flows` diagrams of SEG_HEAD + SEG_TAIL arrows, and bounded lists."""
    from . import graphs, svg

    order = flows_that_explain(an)               # every flow a finding names, one story of each first
    drawn = order[:max_flows]
    segs = flow_segments(an, drawn)
    hosts = _host_activity(an)
    drawn_hosts = [h for h, _ in hosts[:HOSTS_DRAWN]]
    body: list[str] = []
    add = body.append
    i = an.info
    add(f"<header><h1>TCP incident report</h1><p class='sub'>{_e(i.path)} · {_e(clock(an.start, True))} → "
        f"{_e(clock(an.end, True))} ({(an.end - an.start) / NS:.3f} s) · tcpfsm</p></header>")
    add("<nav class='toc'><a href='#summary'>Summary</a><a href='#findings'>Findings</a>"
        "<a href='#hosts'>Hosts</a><a href='#paths'>Paths</a><a href='#flows'>Connections</a><a href='#transitions'>Transitions</a>"
        "<a href='#capture'>Capture</a></nav>")
    others = order[len(drawn):]                  # listed after the diagrams, so every evidence link lands
    listed = others[:FLOWS_LISTED]
    add(_summary(an, hosts, order))
    pairs = None
    if getattr(an, "path", None) is not None:
        from ..path.views import path_pairs
        pairs = path_pairs(an)
    drawn_pairs = {(p["client"], p["server"]) for p in (pairs or [])[:PAIRS_DRAWN]}
    linked_hosts = {h for h, _ in hosts[:HOSTS_DRAWN + HOSTS_LISTED]}     # drawn, or a row of the hosts table
    add(_findings_section(an, linked_hosts, {f.id for f in drawn}, {f.id for f in listed}, drawn_pairs))

    add(f"<section id='hosts'><h2>State counts per host over time</h2><p class='note'>Sockets each host held "
        f"per state, as its <code>netstat -nat</code> would have listed them; busiest hosts first "
        f"({len(drawn_hosts)} of {len(hosts)} drawn). Hover a chart for the counts at that instant.</p>")
    rows = _count_rows(an)
    for h in drawn_hosts:
        per = [(t, c.get(h, {})) for t, c in rows]
        add(f"<figure id='host-{_anchor(h)}'>{svg.host_chart(h, per, an.start, an.end)}</figure>")
    rest = hosts[len(drawn_hosts):]
    if rest:
        add(_hosts_table(an, rest[:HOSTS_LISTED], len(rest)))
    add("</section>")

    add(_paths_section(an, svg, pairs))

    add(f"<section id='flows'><h2>Connections that matter</h2><p class='note'>{len(order)} connections are "
        f"named by findings; {len(drawn)} are drawn as sequence diagrams, one of each kind of story first, most "
        f"severe first (client left, server right; each endpoint's new state beside its own line, timers as "
        f"dots), the others listed below.</p>")
    named_by: dict[int, list] = {f.id: [] for f in drawn}      # aggregate findings that name a drawn flow
    for k, a in enumerate(an.findings):
        for fid in a.flows:
            if fid in named_by:
                named_by[fid].append((k, a))
    for f in drawn:
        add(_flow_figure(an, f, segs.get(f.id), svg, named_by[f.id]))
    if others:
        add(_flows_table(listed, len(others)))
    if not order:
        add("<p>No connection has a finding.</p>")
    add("</section>")

    g = graphs.transition_graph(an)
    nonrfc = [(a, b, d) for a, b, d in g.edges(data=True) if not d["rfc"]]
    add("<section id='transitions'><h2>Observed state transitions</h2><p class='note'>Every state change seen "
        "in this capture, both endpoints, with how often; "
        + (f"<b>{len(nonrfc)} not in the RFC 9293 graph</b> (dashed red)." if nonrfc else
           "all are edges of the RFC 9293 graph.") + "</p>")
    add(f"<figure>{svg.transition_graph_svg(g)}</figure>" if g.number_of_edges() else "<p>No transitions.</p>")
    add("</section>")
    add(_capture_section(an))
    title = f"TCP incident report: {i.path}"
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}<script>{SCRIPT}</script></body></html>\n")


def _e(s) -> str:
    return html.escape(str(s), quote=True)


def _anchor(s: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in s)


def _count_rows(an, points: int = 300) -> list[tuple[int, dict]]:
    span = max(an.end - an.start, 1)
    return an.occupancy.counts(an.start, an.end, max(span // points, 1))


def _host_activity(an) -> list[tuple[str, tuple]]:
    """Hosts, busiest first: most sockets held at once (any state), then findings, then name."""
    peaks = an.occupancy.peaks()
    held: Counter = Counter()
    for (h, _), (n, _, _) in peaks.items():
        held[h] = max(held[h], n)
    found: Counter = Counter()
    for f in an.flows:
        if f.anomalies:
            found[f.client_ip] += 1
            found[f.server_ip] += 1
    for a in an.findings:
        if a.host:
            found[a.host] += a.count
    hosts = set(held) | set(found)
    return sorted(((h, (held[h], found[h])) for h in hosts), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))


def _finding_hosts(an, a) -> list[str]:
    if a.host:
        return [a.host]
    out: Counter = Counter()
    for fid in a.flows[:200]:
        f = an.find_flow(fid)
        if f is not None:
            out[f.server_ip] += 1
            out[f.client_ip] += 1
    return [h for h, _ in out.most_common(2)]


def _summary(an, hosts, named) -> str:
    sev = Counter(a.severity for a in an.findings)
    order = ["critical", "high", "medium", "low", "info"]
    out = ["<section id='summary'><h2>Summary</h2>"]
    if not an.findings:
        out.append("<p class='ok'>Nothing abnormal found: every connection behaved as TCP expects.</p>")
    else:
        worst = an.findings[0]
        first = min(a.ts for a in an.findings)
        last = max(a.ts_end or a.ts for a in an.findings)
        out.append("<div class='cards'>" + "".join(
            f"<div class='card {s}'><b>{sev[s]}</b><span>{s}</span></div>" for s in order if sev.get(s)) +
            f"<div class='card'><b>{len(named)}</b><span>connections named by findings</span></div>"
            f"<div class='card'><b>{len(an.flows) + an.streamed}</b><span>connections</span></div></div>")
        out.append("<dl class='facts'>")
        out.append(f"<dt>What broke</dt><dd><span class='sev {worst.severity}'>{worst.severity}</span> "
                   f"<a href='#finding-0'>{_e(worst.kind)}</a>: {_e(worst.message)}</dd>")
        others = Counter(a.kind for a in an.findings[1:])
        if others:
            out.append("<dt>Also</dt><dd>" + ", ".join(f"{_e(k)} ×{n}" for k, n in others.most_common(8)) + "</dd>")
        out.append(f"<dt>When</dt><dd>{_e(clock(first, True))} → {_e(clock(last, True))} "
                   f"(+{(first - an.start) / NS:.3f} s to +{(last - an.start) / NS:.3f} s into the capture)</dd>")
        involved = Counter()
        for a in an.findings:
            for h in _finding_hosts(an, a):
                involved[h] += 1
        out.append("<dt>Which hosts</dt><dd>" + ", ".join(
            f"<a href='#host-{_anchor(h)}'>{_e(h)}</a> ({n} finding{'s' if n > 1 else ''})"
            for h, n in involved.most_common(6)) + "</dd>")
        out.append("</dl>")
    out.append("</section>")
    return "".join(out)


def _findings_section(an, drawn_hosts: set, drawn_flows: set, listed_flows: set, drawn_pairs: set = frozenset()
                      ) -> str:
    out = ["<section id='findings'><h2>Findings (most severe first)</h2>"]
    if not an.findings:
        out.append("<p>None.</p></section>")
        return "".join(out)
    out.append("<table><thead><tr><th>severity</th><th>kind</th><th>count</th><th>when</th><th>what</th>"
               "<th>evidence</th></tr></thead><tbody>")
    for k, a in enumerate(an.findings[:FINDINGS_LISTED]):
        ev = []
        for h in _finding_hosts(an, a):
            ev.append(f"<a href='#host-{_anchor(h)}'>host {_e(h)}</a>" if h in drawn_hosts else f"host {_e(h)}")
        if (a.host, getattr(a, "service", None)) in drawn_pairs:     # a host pair's finding (lossy_path): its chart
            ev.append(f"<a href='#{_pair_anchor(a.host, a.service)}'>path {_e(a.host)} → {_e(a.service)}</a>")
        fl = [f"<a href='#flow-{fid}'>flow {fid}</a>" if fid in drawn_flows else f"<a href='#list-flow-{fid}'>"
              f"flow {fid}</a>" if fid in listed_flows else f"flow {fid}" for fid in a.flows[:8]]
        if len(a.flows) > 8:
            fl.append(f"+{len(a.flows) - 8} more")
        out.append(f"<tr id='finding-{k}'><td><span class='sev {a.severity}'>{a.severity}</span></td>"
                   f"<td>{_e(a.kind)}</td><td class='num'>{a.count}</td><td>{_e(clock(a.ts))}</td>"
                   f"<td>{_e(a.message)}</td><td class='ev'>{'<br>'.join(ev)}{'<br>' if ev and fl else ''}{', '.join(fl)}</td></tr>")
    out.append("</tbody></table>")
    if len(an.findings) > FINDINGS_LISTED:
        out.append(f"<p class='note'>… and {len(an.findings) - FINDINGS_LISTED} more findings (<code>tcpfsm "
                   f"analyze --format json</code> lists every one).</p>")
    out.append("</section>")
    return "".join(out)


def _pair_anchor(client: str, server: str) -> str:
    return "pair-" + _anchor(f"{client}-{server}")


def _paths_section(an, svg, pairs: list[dict] | None) -> str:
    """Path health per host pair, busiest first: for the first PAIRS_DRAWN, `tcpfsm paths`' mtr-like row and
    a chart of RTT and retransmissions over time (`<svg data-pair="CLIENT-SERVER">`); the others listed."""
    from ..path.views import PATHS_HEAD, PATHS_NOTE, path_cells
    out = ["<section id='paths'><h2>Path health per host pair</h2>"]
    if pairs is None:
        out.append("<p class='note'>Not analysed: path health needs the whole capture (not with "
                   "<code>--stream</code>).</p></section>")
        return "".join(out)
    drawn = pairs[:PAIRS_DRAWN]
    series = pair_series(an, [(p["client"], p["server"]) for p in drawn])
    out.append(f"<p class='note'>What <code>mtr --report</code> would have said about the network between "
               f"each client and server, from the connections themselves (<code>tcpfsm paths</code>; "
               f"{_e(PATHS_NOTE)}); busiest pairs first ({len(drawn)} of {len(pairs)} drawn). Charts: the "
               f"RTT samples per interval (a dot at their median, a whisker to the least and the most) for each "
               f"side's data, and the segments each side retransmitted (Wireshark's "
               f"<code>tcp.analysis.retransmission</code>), the client's upward, the server's downward. Hover "
               f"for the values.</p>")
    if not pairs:
        out.append("<p>No connections.</p></section>")
        return "".join(out)
    if series is None:
        out.append("<p class='note'>The capture could not be read again (stdin): the tables only.</p>")
    head = "<tr>" + "".join(f"<th>{h}</th>" for h in PATHS_HEAD) + "</tr>"
    by_pair: dict[tuple, list] = {}
    for f in an.flows:
        by_pair.setdefault((f.client_ip, f.server_ip), []).append(f)
    for p in drawn:
        key = (p["client"], p["server"])
        cells = path_cells(p)
        out.append(f"<figure class='pair' id='{_pair_anchor(*key)}'><h3>"
                   f"{_e(p['client'])} → {_e(p['server'])}</h3><table class='mtr'><thead>{head}</thead><tbody><tr>"
                   + "".join(f"<td{'' if j < 2 else ' class=num'}>{_e(c)}</td>" for j, c in enumerate(cells))
                   + "</tr></tbody></table>")
        if series is not None:
            fl = by_pair.get(key, [])
            t0 = min(f.first_ts for f in fl)
            t1 = max(f.last_ts for f in fl)
            step, bins = pair_bins(series[key], t0, t1)
            out.append(f"<div class='scroll'>{svg.pair_chart(p['client'], p['server'], step, bins, t0, t1)}</div>")
        out.append("</figure>")
    rest = pairs[len(drawn):]
    if rest:
        out.append(f"<h3>Other host pairs ({len(rest)})</h3><table class='mtr'><thead>{head}</thead><tbody>")
        for p in rest[:PAIRS_LISTED]:
            out.append("<tr>" + "".join(f"<td{'' if j < 2 else ' class=num'}>{_e(c)}</td>"
                                        for j, c in enumerate(path_cells(p))) + "</tr>")
        out.append("</tbody></table>")
        if len(rest) > PAIRS_LISTED:
            out.append(f"<p class='note'>… and {len(rest) - PAIRS_LISTED} more pairs (<code>tcpfsm paths</code> "
                       f"lists every one).</p>")
    out.append("</section>")
    return "".join(out)


def _hosts_table(an, rest, total: int) -> str:
    peaks = an.occupancy.peaks()
    out = [f"<h3>Other hosts ({total})</h3><table><thead><tr><th>host</th>"
           + "".join(f"<th>{NETSTAT_NAME[s]}</th>" for s in SHOWN) + "</tr></thead><tbody>"]
    for h, _ in rest:
        out.append(f"<tr id='host-{_anchor(h)}'><td>{_e(h)}</td>" + "".join(
            f"<td class='num'>{peaks[(h, s)][0] if (h, s) in peaks else ''}</td>" for s in SHOWN) + "</tr>")
    out.append("</tbody></table>")
    if total > len(rest):
        out.append(f"<p class='note'>… and {total - len(rest)} more hosts (see <code>tcpfsm states --by-host"
                   f"</code>).</p>")
    out.append("<p class='note'>Most sockets held at once per state.</p>")
    return "".join(out)


def _flow_figure(an, f, seg, svg, named_by=()) -> str:
    c, s = f.conn.client, f.conn.server
    kinds = ", ".join(sorted({a.kind for a in f.anomalies} | {a.kind for _, a in named_by}))
    head = (f"<h3>Flow {f.id}: {_e(f.client)} → {_e(f.server)}</h3><p class='sub'>{_e(conn_state(f))} "
            f"{_e(f.conn.history)} · packets {c.packets}/{s.packets} · bytes {c.payload}/{s.payload} · ends "
            f"client {c.state.value}, server {s.state.value} · {_e(kinds)}</p>")
    segments, more = seg if seg else ([], 0)
    finds = "".join(f"<li><span class='sev {a.severity}'>{a.severity}</span> {_e(a.kind)}: {_e(a.message)}</li>"
                    for a in f.anomalies)
    finds += "".join(f"<li><span class='sev {a.severity}'>{a.severity}</span> one of the connections of "
                     + (f"<a href='#finding-{k}'>{_e(a.kind)}</a>" if k < FINDINGS_LISTED else _e(a.kind))
                     + f"{f' on {_e(a.host)}' if a.host else ''}</li>"
                     for k, a in named_by)
    return (f"<figure class='flow' id='flow-{f.id}'>{head}<div class='scroll'>"
            f"{svg.sequence_diagram(f, segments, more)}</div><ul class='fl'>{finds}</ul></figure>")


def _flows_table(flows, total: int) -> str:
    out = [f"<h3>Other connections named by findings ({total})</h3><table><thead><tr><th>id</th><th>client</th>"
           "<th>server</th><th>client state</th><th>server state</th><th>zeek</th><th>findings</th></tr></thead>"
           "<tbody>"]
    for f in flows:
        out.append(f"<tr id='list-flow-{f.id}'><td>{f.id}</td><td>{_e(f.client)}</td><td>{_e(f.server)}</td>"
                   f"<td>{f.conn.client.state.value}</td><td>{f.conn.server.state.value}</td>"
                   f"<td>{_e(conn_state(f))} {_e(f.conn.history)}</td>"
                   f"<td>{_e(', '.join(sorted({a.kind for a in f.anomalies})))}</td></tr>")
    out.append("</tbody></table>")
    if total > len(flows):
        out.append(f"<p class='note'>… and {total - len(flows)} more (<code>tcpfsm analyze --format json</code> "
                   f"lists every one).</p>")
    return "".join(out)


def _capture_section(an) -> str:
    i = an.info
    s = an.summary()
    rows = [("file", i.path), ("format", f"{i.format}{', gzip' if i.compressed else ''}, link types "
                                        f"{', '.join(map(str, i.linktypes)) or '-'}"),
            ("read", capture_line(an)),
            ("skipped", ", ".join(f"{k} {v}" for k, v in s["skipped"].items()) or "nothing"),
            ("profile", f"{an.profile.name} (TIME_WAIT {an.profile.time_wait:g} s, fin_timeout "
                        f"{an.profile.fin_timeout:g} s)")]
    rows += [("warning", w) for w in s["warnings"]]
    return ("<section id='capture'><h2>Capture</h2><table class='kv'>" +
            "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "</table></section>")


def flow_segments(an, flows, head: int = SEG_HEAD, tail: int = SEG_TAIL) -> dict[int, tuple[list, int]]:
    """The segments of `flows`, read again from the capture: flow id -> (first `head` and last `tail`
    segments as (index, ts, role, flags, seq, ack, plen), how many were left out between them). Empty
    when the capture cannot be read again (stdin)."""
    import ipaddress
    from collections import deque

    import numpy as np

    cap = _read_again(an) if flows else None
    if cap is None:                                 # unreadable now: the diagrams fall back to transitions
        return {}

    def raw(ip: str) -> bytes:
        a = ipaddress.ip_address(ip)
        return (b"\x00" * 10 + b"\xff\xff" + a.packed) if a.version == 4 else a.packed

    keys: dict[tuple, list] = {}
    for f in flows:
        c, s = raw(f.client_ip), raw(f.server_ip)
        keys.setdefault((c, s, f.client_port, f.server_port), []).append((f, "client"))
        keys.setdefault((s, c, f.server_port, f.client_port), []).append((f, "server"))
    ports = np.array(sorted({k[2] for k in keys}), dtype=np.uint16)
    got = {f.id: ([], deque(maxlen=tail), [0]) for f in flows}
    try:
        for b in cap.batches():
            cols = b.cols
            cand = np.nonzero(np.isin(cols["sport"], ports) & np.isin(cols["dport"], ports))[0]
            for k in cand.tolist():
                key = (bytes(cols["src"][k]), bytes(cols["dst"][k]), int(cols["sport"][k]), int(cols["dport"][k]))
                for f, role in keys.get(key, ()):
                    ts = int(cols["ts"][k])
                    if f.first_ts <= ts <= f.last_ts:
                        first, last, n = got[f.id]
                        row = (int(cols["index"][k]), ts, role, int(cols["flags"][k]), int(cols["seq"][k]),
                               int(cols["ack"][k]), int(cols["plen"][k]))
                        if len(first) < head:
                            first.append(row)
                        else:
                            last.append(row)
                        n[0] += 1
                        break
    except Exception:
        return {}
    return {fid: (first + list(last), n[0] - len(first) - len(last)) for fid, (first, last, n) in got.items()}


def _read_again(an):
    """The capture's batches once more (the report's diagrams and path charts need what the analysis did not
    keep), or None when it cannot be read again (stdin, a file gone)."""
    path = an.info.path
    if not path or path == "-" or path == "<stdin>":
        return None
    try:
        from ..capture.reader import open_capture
        return open_capture(path)
    except Exception:
        return None


def pair_series(an, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], dict] | None:
    """RTT samples and retransmissions over time of the host pairs `pairs` ((client address, server address),
    as tcpfsm.path.views.path_pairs names them): the capture is read again and the sequence-analysis kernel
    (tcpfsm.path.segments) runs on these pairs' segments alone. A connection's flags and Karn samples depend
    on its own segments only, so they are those of the whole analysis (the tests compare them with tshark).
    pair -> {"rtt": (ts ns, RTT ns, the data's sender is the client), "retx": (ts ns, sender is the client)},
    numpy arrays in capture order. None when the capture cannot be read again."""
    import numpy as np

    from ..capture.batch import Batch
    from ..capture.keys import flow_key_array
    from ..path.flows import flow_key
    from ..path.segments import ANALYSIS_NAMES, SequenceAnalysis

    cap = _read_again(an)
    if cap is None or not pairs:
        return None if cap is None else {}
    slot = {p: k for k, p in enumerate(pairs)}
    by_key: dict[bytes, list[tuple[int, int, bool]]] = {}       # key -> (first ts, pair slot, client is lower)
    for f in an.flows:
        k = slot.get((f.client_ip, f.server_ip))
        if k is not None:
            by_key.setdefault(flow_key(f), []).append((f.first_ts, k, f.client_is_lo))
    for lst in by_key.values():
        lst.sort()
    sa = SequenceAnalysis(keep_rows=True)
    bit = np.uint32(1 << ANALYSIS_NAMES.index("retransmission"))
    fed: list[tuple] = []            # per segment fed: (index, ts, pair slot, sender is the client)
    retx: list[tuple] = []           # per retransmission: (ts, pair slot, sender is the client)
    try:
        for b in cap.batches():
            c = b.cols
            if not len(c["index"]):
                continue
            karr, lo = flow_key_array(c)
            uniq, inv = np.unique(karr, return_inverse=True)
            inv = inv.ravel()
            upair = np.full(len(uniq), -1, np.int64)
            ulo = np.zeros(len(uniq), bool)
            multi = []
            for j, key in enumerate(uniq.tolist()):
                lst = by_key.get(key)
                if lst:
                    upair[j], ulo[j] = lst[0][1], lst[0][2]
                    if len(lst) > 1:
                        multi.append((j, lst))
            pair = upair[inv]
            client_lo = ulo[inv]
            for j, lst in multi:            # a 4-tuple reused: each segment goes to the flow started last before it
                rows = np.flatnonzero(inv == j)
                starts = np.array([x[0] for x in lst], np.int64)
                pick = np.maximum(np.searchsorted(starts, c["ts"][rows], side="right") - 1, 0)
                pair[rows] = np.array([x[1] for x in lst])[pick]
                client_lo[rows] = np.array([x[2] for x in lst])[pick]
            sel = np.flatnonzero(pair >= 0)
            if not len(sel):
                continue
            sa.feed_batch(Batch({name: v[sel] for name, v in c.items()}))
            r = sa.take_rows()                       # the rows of this batch only: memory bounded by a batch
            p, cl = pair[sel].astype(np.int16), lo[sel] == client_lo[sel]
            fed.append((r.index, r.ts, p, cl))
            m = (r.bits & bit) != 0
            if m.any():
                retx.append((r.ts[m], p[m], cl[m]))
    except Exception:                   # unreadable now: the section keeps its tables, without the charts
        return None
    z, zb = np.zeros(0, np.int64), np.zeros(0, bool)
    out = {q: {"rtt": (z, z, zb), "retx": (z, zb)} for q in pairs}
    if not fed:
        return out
    index, ts, fp, fc = (np.concatenate(x) for x in zip(*fed))
    rts, rp, rc = (np.concatenate(x) for x in zip(*retx)) if retx else (z, z, zb)
    _conv, _acker_lo, rtt, packet = sa.rtt_samples()
    at = np.searchsorted(index, packet)              # the acknowledging segment (fed in capture order)
    for q, k in slot.items():
        m = rp == k
        s_ = fp[at] == k
        out[q] = {"rtt": (ts[at[s_]], rtt[s_], ~fc[at[s_]]), "retx": (rts[m], rc[m])}
    return out


def pair_bins(series: dict, t0: int, t1: int, bins: int = 100) -> tuple[int, list[dict]]:
    """One host pair's series in intervals of a round length (about `bins` of them from t0 to t1): per
    interval with anything in it, its start, per direction the RTT samples' count/min/median/max (ms) and the
    retransmissions. Returns (interval ns, intervals)."""
    import numpy as np

    from .svg import nice_step
    step = max(int(nice_step((t1 - t0) / NS, bins) * NS), 1000)
    base = t0 // step * step
    nb = int((t1 - base) // step) + 1
    out: dict[int, dict] = {}

    def slot(ts):
        return np.clip((ts - base) // step, 0, nb - 1)

    ts, rtt, cdata = series["rtt"]
    for side, mask in (("client", cdata), ("server", ~cdata)):
        b, v = slot(ts[mask]), rtt[mask] / 1e6
        order = np.lexsort((v, b))
        b, v = b[order], v[order]
        cuts = np.flatnonzero(np.diff(b)) + 1
        for lo_, hi in zip(np.r_[0, cuts], np.r_[cuts, len(b)]):
            if hi > lo_:
                vals = v[lo_:hi]
                d = out.setdefault(int(b[lo_]), {})
                d["rtt_" + side] = (int(hi - lo_), float(vals[0]), float(np.median(vals)), float(vals[-1]))
    ts, cl = series["retx"]
    for side, mask in (("client", cl), ("server", ~cl)):
        for b, n in zip(*np.unique(slot(ts[mask]), return_counts=True)):
            out.setdefault(int(b), {})["retx_" + side] = int(n)
    return step, [dict(d, start=base + b * step) for b, d in sorted(out.items())]


STYLE = """
:root{--fg:#1d2329;--muted:#68717a;--line:#d8dde2;--bg:#fff;--accent:#1f6feb}
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
background:var(--bg);max-width:1180px;margin:0 auto;padding:24px}
header h1{font-size:24px;margin:0}.sub{color:var(--muted);margin:4px 0 12px}
nav.toc{display:flex;gap:14px;border-bottom:1px solid var(--line);padding-bottom:8px;margin-bottom:8px}
nav.toc a{color:var(--accent);text-decoration:none}
h2{font-size:19px;margin:28px 0 8px;border-bottom:2px solid var(--line);padding-bottom:4px}
h3{font-size:15px;margin:18px 0 4px}.note{color:var(--muted);margin:4px 0 10px}
a{color:var(--accent)}code{background:#f3f5f7;padding:0 3px;border-radius:3px}
table{border-collapse:collapse;margin:8px 0 14px;font-size:13px;width:100%}
th,td{border-bottom:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.kv th{width:120px}td.ev{min-width:170px;max-width:240px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0 12px}
.card{border:1px solid var(--line);border-radius:8px;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:22px}.card span{color:var(--muted)}
.card.critical{border-color:#8b0000}.card.high{border-color:#c0392b}.card.medium{border-color:#d4a017}
dl.facts{display:grid;grid-template-columns:130px 1fr;gap:4px 12px;margin:0}dl.facts dt{font-weight:600}
dl.facts dd{margin:0}
.sev{display:inline-block;border-radius:4px;padding:0 6px;font-size:12px;font-weight:600;color:#fff;background:#888}
.sev.critical{background:#8b0000}.sev.high{background:#c0392b}.sev.medium{background:#b7791f}
.sev.low{background:#2b6cb0}.sev.info{background:#718096}
.ok{color:#1e7d32;font-weight:600}
figure{margin:10px 0 18px;page-break-inside:avoid;break-inside:avoid}
.scroll{overflow-x:auto}ul.fl{margin:4px 0 0 18px;padding:0}
svg{font:11px system-ui,sans-serif;max-width:100%;height:auto}
svg .grid{stroke:#eceff2}svg .axis{stroke:#68717a}svg .ct{font-weight:600;font-size:12px}
svg .hov{fill:transparent}svg .hov:hover{fill:rgba(31,111,235,.12)}svg .readout{fill:#1f6feb}
svg .ep{font-weight:600;font-size:12px}svg .muted{fill:#68717a}
svg .life{stroke:#444;stroke-width:1.5}
svg.seq g line{stroke:#333}svg.seq g path{fill:#333}
svg g.syn line{stroke:#2b6cb0}svg g.syn path,svg g.syn text{fill:#2b6cb0}
svg g.rst line{stroke:#c0392b}svg g.rst path,svg g.rst text{fill:#c0392b}
svg g.data line{stroke:#1e7d32}svg g.data path{fill:#1e7d32}
svg .st{font-weight:600;fill:#6b3fa0}svg .st.timer{fill:#b7791f}svg .st.nonrfc{fill:#c0392b}
svg .st.retracted{text-decoration:line-through;fill:#999}svg .tmark{fill:#b7791f}svg .tmark.pend{fill:#fff;stroke:#b7791f}
svg.pair .bar{stroke:none}svg.pair g line{stroke-width:1}
svg .tgraph .n rect,svg .n rect{fill:#f6f8fa;stroke:#445}svg .n text{font-weight:600}
svg g.e path{stroke:#555}svg g.e.nonrfc path{stroke:#c0392b;stroke-dasharray:6 4}
svg .cnt{fill:#1f6feb;font-weight:600;paint-order:stroke;stroke:#fff;stroke-width:3px}
@media print{body{max-width:none;padding:0;font-size:11px}nav.toc{display:none}
a{color:inherit;text-decoration:none}.scroll{overflow:visible}h2{break-after:avoid}
svg .hov:hover{fill:transparent}}
"""

# Hovering a band of a host chart copies its <title> into the chart's visible read-out line.
SCRIPT = """
document.querySelectorAll('svg.chart').forEach(function(c){
  var out=c.querySelector('.readout');
  c.querySelectorAll('.hov').forEach(function(r){
    r.addEventListener('mouseenter',function(){out.textContent=r.querySelector('title').textContent;});
  });
});
"""
