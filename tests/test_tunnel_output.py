"""The encapsulation a connection was carried in is named in the output (Zeek's tunnel_parents style)."""
from __future__ import annotations

from pathlib import Path

import tcpfsm
from tcpfsm.cli import main

TUNNELS = Path(__file__).resolve().parent.parent / "captures" / "tunnels"


def test_inner_connection_records_its_vxlan_tunnel():
    an = tcpfsm.analyze(str(TUNNELS / "vxlan.pcap"), zeek=True)
    assert len(an.flows) == 1 and an.flows[0].tunnels
    names = {an.info.tunnels[i] for i in an.flows[0].tunnels}
    assert all(n.startswith("vxlan ") and "vni 42" in n for n in names)
    (z,) = an.zeek_conns
    assert set(z.tunnel_parents) == names


def test_conn_log_tunnel_parents_column_lists_nested_encapsulations(capsys):
    try:
        main(["analyze", str(TUNNELS / "nested.pcap"), "--format", "zeek"])
    except SystemExit as e:
        assert e.code in (0, None)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if not ln.startswith("#")]
    assert len(lines) == 1
    parents = lines[0].split("\t")[-1].split(",")
    assert len(parents) == 2 and all(p.startswith("mpls ") and " / gre " in p and " / vxlan " in p
                                     for p in parents)


def test_untunnelled_connection_has_no_tunnel_parents():
    an = tcpfsm.analyze(str(TUNNELS.parent / "kernel" / "refused.pcap"), zeek=True)
    assert an.flows[0].tunnels is None and an.zeek_conns[0].tunnel_parents is None
