"""networkx graphs of one capture: the state transitions observed (not only the RFC's), and who talked to
whom. Built from an `Analysis`; exported as GraphML, DOT or node-link JSON by `tcpfsm graph CAPTURE`, and
drawn in the HTML report. Decides nothing: an edge is "not RFC" when the transition says so (fsm owns
that rule).
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict

import networkx as nx

from ..detect.zeek import conn_state


def transition_graph(an) -> nx.DiGraph:
    """States as nodes, each observed change as an edge with `count` (how many times, both endpoints),
    `client` / `server` (per role), `rfc` (an edge of the RFC 9293 graph), `causes` (the packets or timers
    that caused it, most frequent first, as "CAUSE:N;...") and `flows` (how many connections took it).
    Retracted transitions (never happened, by later evidence) are left out; `alt` ones count."""
    edges: dict[tuple[str, str], Counter] = defaultdict(Counter)
    causes: dict[tuple[str, str], Counter] = defaultdict(Counter)
    flows: dict[tuple[str, str], set] = defaultdict(set)
    rfc: dict[tuple[str, str], bool] = {}
    nodes: Counter = Counter()
    for f in an.flows:
        for t in f.transitions:
            if t.retracted:
                continue
            k = (t.old.value, t.new.value)
            edges[k][t.endpoint] += 1
            causes[k][t.cause] += 1
            flows[k].add(f.id)
            rfc[k] = rfc.get(k, True) and bool(t.rfc)
            nodes[t.old.value] += 0
            nodes[t.new.value] += 1
    g = nx.DiGraph(name="observed transitions", capture=an.info.path)
    for n, entered in nodes.items():
        g.add_node(n, entered=entered)
    for (a, b), per_role in edges.items():
        g.add_edge(a, b, count=sum(per_role.values()), client=per_role.get("client", 0),
                   server=per_role.get("server", 0), rfc=rfc[(a, b)], flows=len(flows[(a, b)]),
                   causes=";".join(f"{c}:{n}" for c, n in causes[(a, b)].most_common()))
    return g


def host_graph(an) -> nx.MultiDiGraph:
    """Hosts as nodes (`connections`, `findings`); one edge per connection, client -> server, with its
    flow id, ports, final states, Zeek conn_state and finding kinds."""
    g = nx.MultiDiGraph(name="hosts", capture=an.info.path)
    per_host: Counter = Counter()
    found: Counter = Counter()
    for f in an.flows:
        kinds = sorted({a.kind for a in f.anomalies})
        for ip in (f.client_ip, f.server_ip):
            per_host[ip] += 1
            found[ip] += len(kinds)
        g.add_edge(f.client_ip, f.server_ip, key=f.id, flow=f.id, client_port=f.client_port,
                   server_port=f.server_port, client_state=f.conn.client.state.value,
                   server_state=f.conn.server.state.value, conn_state=conn_state(f), findings=",".join(kinds))
    for ip in g.nodes:
        g.nodes[ip]["connections"] = per_host[ip]
        g.nodes[ip]["findings"] = found[ip]
    return g


def to_json(g) -> str:
    return json.dumps(nx.node_link_data(g, edges="edges"), indent=2) + "\n"


def to_graphml(g) -> str:
    return "\n".join(nx.generate_graphml(g)) + "\n"


def to_dot(g) -> str:
    """Graphviz DOT without pygraphviz: every attribute as a quoted label; edges not in the RFC dashed red."""
    def attrs(d: dict, extra: dict | None = None) -> str:
        items = {**{k: v for k, v in d.items()}, **(extra or {})}
        return ", ".join(f'{k}="{_dot_escape(v)}"' for k, v in items.items())

    kind = "digraph"
    lines = [f'{kind} "{_dot_escape(g.graph.get("name", "g"))}" {{']
    for n, d in g.nodes(data=True):
        lines.append(f'  "{_dot_escape(n)}" [{attrs(d)}];')
    multi = g.is_multigraph()
    for e in (g.edges(keys=True, data=True) if multi else g.edges(data=True)):
        a, b, d = e[0], e[1], e[-1]
        extra = {}
        if "count" in d:
            extra["label"] = str(d["count"])
        if d.get("rfc") is False:
            extra.update(style="dashed", color="red")
        lines.append(f'  "{_dot_escape(a)}" -> "{_dot_escape(b)}" [{attrs(d, extra)}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_escape(v) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"')
