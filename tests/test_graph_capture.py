"""`tcpfsm graph CAPTURE` (issue 9 part 7): the transitions observed in a capture and its host conversation
graph, as networkx exports (JSON node-link, GraphML, DOT). Counts are checked against the same capture's
`analyze --format json`; edges outside the RFC graph are marked (a midstream pickup's CLOSED ->
ESTABLISHED)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import networkx as nx
import pytest
from click.testing import CliRunner

from tcpfsm.cli import cli

ROOT = Path(__file__).resolve().parent.parent
MIXED = str(ROOT / "captures" / "kernel" / "concurrent_mixed.pcap")
MIDSTREAM = str(ROOT / "captures" / "crafted" / "midstream.pcap")


def cmd(*args: str) -> str:
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.stdout


def observed(cap: str) -> Counter:
    doc = json.loads(cmd("analyze", cap, "--format", "json"))
    return Counter((t["from"], t["to"]) for f in doc["flows"] for t in f["transitions"] if not t.get("retracted"))


@pytest.mark.parametrize("cap", [MIXED, MIDSTREAM], ids=["mixed", "midstream"])
def test_transition_edges_count_what_analyze_lists(cap):
    doc = json.loads(cmd("graph", cap, "--format", "json"))
    got = Counter({(e["source"], e["target"]): e["count"] for e in doc["edges"]})
    assert got == observed(cap) and got
    for e in doc["edges"]:
        assert e["client"] + e["server"] == e["count"] and e["flows"] >= 1


def test_non_rfc_edges_are_marked_in_every_format():
    doc = json.loads(cmd("graph", MIDSTREAM, "--format", "json"))
    marked = {(e["source"], e["target"]) for e in doc["edges"] if e["rfc"] is False}
    assert ("CLOSED", "ESTABLISHED") in marked
    assert all(e["rfc"] for e in doc["edges"] if (e["source"], e["target"]) not in marked)
    dot = cmd("graph", MIDSTREAM, "--format", "dot")
    line = next(x for x in dot.splitlines() if '"CLOSED" -> "ESTABLISHED"' in x)
    assert 'style="dashed"' in line and 'color="red"' in line
    g = nx.parse_graphml(cmd("graph", MIDSTREAM, "--format", "graphml"))
    assert g.edges["CLOSED", "ESTABLISHED"]["rfc"] is False


def test_mixed_capture_has_only_rfc_edges():
    doc = json.loads(cmd("graph", MIXED, "--format", "json"))
    assert all(e["rfc"] for e in doc["edges"])


def test_host_graph_has_a_node_per_host_and_an_edge_per_connection():
    flows = json.loads(cmd("analyze", MIXED, "--format", "json"))["flows"]
    g = nx.parse_graphml(cmd("graph", MIXED, "--what", "hosts", "--format", "graphml"), force_multigraph=True)
    assert set(g.nodes) == {f["client"]["ip"] for f in flows} | {f["server"]["ip"] for f in flows}
    assert g.number_of_edges() == len(flows)
    by_flow = {d["flow"]: (a, b, d) for a, b, d in g.edges(data=True)}
    for f in flows:
        a, b, d = by_flow[f["id"]]
        assert (a, b) == (f["client"]["ip"], f["server"]["ip"])
        assert (d["client_state"], d["server_state"]) == (f["states"]["client"], f["states"]["server"])
        assert d["findings"] == ",".join(sorted({x["kind"] for x in f["anomalies"]}))
    assert g.nodes["10.77.15.2"]["connections"] == len(flows)


def test_without_a_capture_it_is_still_the_rfc_graph():
    doc = json.loads(cmd("graph", "--format", "json"))
    assert ("CLOSED", "ESTABLISHED") in {(e["source"], e["target"]) for e in doc["edges"] if not e["rfc"]}
    assert "count" not in doc["edges"][0]


def test_report_draws_the_observed_graph_with_non_rfc_edges_dashed():
    import tcpfsm
    from tcpfsm.render.report import html_report
    page = html_report(tcpfsm.analyze(MIDSTREAM))
    part = page[page.index("<section id='transitions'>"):]
    assert "class=\"e nonrfc\"" in part and "CLOSED → ESTABLISHED: 2" in part
    assert "not in the RFC 9293 graph" in part
