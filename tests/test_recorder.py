"""Smoke test for the kernel-truth recorder (captures/record.py).

Runs ONE quick scenario (``refused``, ~3 s) through the real recorder into a
temporary directory.  Needs root, network namespaces, iptables, ss and
tcpdump; skipped otherwise.
"""
import json
import os
import shutil
import struct
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDER = os.path.join(ROOT, "captures", "record.py")

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="recorder needs root"),
    pytest.mark.skipif(not all(shutil.which(t) for t in ("tcpdump", "ip", "ss", "iptables")),
                       reason="needs tcpdump, ip, ss and iptables"),
]

STATES = {"ESTAB", "SYN-SENT", "SYN-RECV", "FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT", "LAST-ACK",
          "CLOSING", "TIME-WAIT", "LISTEN", "CLOSE"}


def _netns():
    txt = subprocess.run(["ip", "netns", "list"], stdout=subprocess.PIPE, text=True).stdout
    return {ln.split()[0] for ln in txt.splitlines() if ln.strip()}


def test_recorder_refused_scenario(tmp_path):
    out = tmp_path / "kernel"
    before = _netns()
    r = subprocess.run([sys.executable, RECORDER, "--only", "refused", "--out", str(out)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert r.returncode == 0, r.stdout

    pcap = out / "refused.pcap"
    truth_path = out / "refused.truth.json"
    assert pcap.exists() and truth_path.exists(), r.stdout

    # pcap: a classic libpcap file with a few Ethernet frames
    data = pcap.read_bytes()
    assert 24 < len(data) < 1_000_000
    magic = struct.unpack("<I", data[:4])[0]
    assert magic in (0xA1B2C3D4, 0xA1B23C4D, 0xD4C3B2A1, 0x4D3CB2A1)
    assert struct.unpack("<I" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">I", data[20:24])[0] == 1
    if shutil.which("tcpdump"):
        txt = subprocess.run(["tcpdump", "-nr", str(pcap)], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, timeout=30).stdout
        assert "Flags [S]" in txt and "Flags [R.]" in txt, txt

    truth = json.loads(truth_path.read_text())
    assert truth["scenario"] == "refused"
    assert set(truth["hosts"]) == {"client", "server"}
    assert truth["measured"]["connect_error"] == "ECONNREFUSED"
    assert truth["warnings"] == []
    snaps = truth["snapshots"]
    assert len(snaps) >= 2
    ts = [s["t"] for s in snaps]
    assert ts == sorted(ts)
    for s in snaps:
        assert s["label"]
        for row in s["sockets"]:
            assert row["ns"] in ("client", "server")
            assert row["host"] == truth["hosts"][row["ns"]]
            assert row["state"] in STATES
            assert ":" in row["local"] and ":" in row["remote"]
        # nothing but the listener survives a refused connect
        assert [x["state"] for x in s["sockets"]] == ["LISTEN"]
    # the recorder removed the namespaces it created
    assert not {n for n in _netns() - before if n.startswith(("tfc", "tfs"))}
