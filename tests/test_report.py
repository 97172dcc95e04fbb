"""The incident report: self-contained Markdown and HTML with findings, piles, a chart and ladders."""
from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import tcpfsm
from tcpfsm.render.report import html_report, markdown

KERNEL = Path(__file__).resolve().parent.parent / "captures" / "kernel"


def test_markdown_report_names_the_findings_piles_and_ladders():
    an = tcpfsm.analyze(str(KERNEL / "last_ack.pcap"))
    md = markdown(an)
    assert "| high | last_ack_unacked | 1 |" in md
    assert "skipped 4 (arp 4)" in md
    assert "| 10.77.10.2 |" in md and "LAST_ACK" in md
    assert "CLOSE_WAIT → LAST_ACK" in md          # the ladder of the flow that matters


def test_html_report_is_one_page_with_inline_charts():
    an = tcpfsm.analyze(str(KERNEL / "concurrent_mixed.pcap"))
    page = html_report(an)
    assert page.startswith("<!doctype html>") and "http" not in page.split("<svg")[0]
    # a chart per host (2), one per host pair (1), a sequence diagram per flow that matters (10), the
    # observed-transition graph
    assert page.count("<svg") == 2 + 1 + 10 + 1 and page.count("<polyline") >= 8    # 4+ states on each host
    assert "close_wait_pile" in page
    HTMLParser().feed(page)


def test_report_command_writes_html_by_suffix(tmp_path, capsys):
    from tcpfsm.cli import main
    out = tmp_path / "r.html"
    try:
        main(["report", str(KERNEL / "refused.pcap"), "-o", str(out)])
    except SystemExit as e:
        assert e.code in (0, None)
    assert out.read_text().startswith("<!doctype html>") and "rejected" in out.read_text()


def test_markdown_report_has_the_paths_rows_and_the_flows_path_findings_name():
    """The recorded loss: the pair's mtr-like row is `tcpfsm paths`' own, and the connection lossy_path names
    is among the ladders (an aggregate finding names it, not a per-flow one)."""
    from tcpfsm.path.views import path_cells, path_pairs
    an = tcpfsm.analyze(str(KERNEL.parent / "path" / "loss_bulk.pcap"))
    md = markdown(an)
    (p,) = path_pairs(an)
    assert "| " + " | ".join(path_cells(p)) + " |" in md
    assert any(a.kind == "lossy_path" for a in an.findings) and not an.flows[0].anomalies
    assert "## Connections that matter (1 of 1 shown)" in md and "### flow 1:" in md
