"""Several capture files read as one (tcpfsm.capture.multi): kernel recordings cut into rotated parts give
the whole file's flows, transitions and findings; overlapping parts are merged by time and reported;
every global packet index maps back to its file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dpkt
import pytest

from tcpfsm import api
from tcpfsm.capture.batch import CaptureError
from tcpfsm.capture.multi import expand, locate
from tcpfsm.render import records

KERNEL = Path(__file__).resolve().parent.parent / "captures" / "kernel"
SCENARIOS = ["concurrent_mixed", "time_wait_reuse", "syn_flood", "vanished_peer", "close_wait_leak", "lossy_bulk"]


def read_records(path):
    with open(path, "rb") as f:
        r = dpkt.pcap.Reader(f)
        return r.datalink(), [(ts, bytes(buf)) for ts, buf in r]


def write(path, linktype, recs):
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, linktype=linktype)
        for ts, buf in recs:
            w.writepkt(buf, ts)
    return str(path)


def split(src, outdir, nparts, names=None):
    """Cut a capture into `nparts` consecutive parts (as tcpdump -C rotates), named so that name order is
    NOT time order (the reader must order by first timestamp)."""
    lt, recs = read_records(src)
    size = -(-len(recs) // nparts)
    paths = []
    for k in range(nparts):
        name = names[k] if names else f"rot{(nparts - k) * 7 % 97:02d}.pcap"
        paths.append(write(Path(outdir) / name, lt, recs[k * size:(k + 1) * size]))
    return paths


def signature(an, packet=lambda i: i):
    """Flows, transitions and findings, with packet indexes passed through `packet`."""
    flows = []
    for f in an.flows:
        rec = records.flow_record(f)
        rec.pop("path", None)
        rec.pop("transitions", None)              # compared below, packets mapped
        rec["first_packet"] = packet(f.first_packet)
        for a in rec.get("anomalies", []):
            a.pop("message")                          # names packets by index: compared where indexes agree
        flows.append(rec)
    trs = [(f.id, [(t.ts, t.endpoint, t.old, t.new, None if t.packet is None else packet(t.packet), t.cause,
                    t.retracted) for t in f.transitions]) for f in an.flows]
    findings = [(a.kind, a.severity, a.ts, a.ts_end, a.count, a.flows, a.host, a.service) for a in an.findings]
    return flows, trs, findings


@pytest.mark.parametrize("name", SCENARIOS)
def test_rotated_parts_equal_the_whole_file(tmp_path, name):
    src = KERNEL / f"{name}.pcap"
    whole = api.analyze(str(src))
    parts = split(src, tmp_path, 4)
    multi = api.analyze(parts)
    assert signature(multi) == signature(whole)
    assert [a.message for a in multi.findings] == [a.message for a in whole.findings]
    assert [[a.message for a in f.anomalies] for f in multi.flows] == [[a.message for a in f.anomalies]
                                                                        for f in whole.flows]
    s1, s2 = whole.summary(), multi.summary()
    for key in ("records", "tcp_segments", "skipped", "flows", "states_at_end", "findings_by_severity",
                "first_ts", "last_ts", "checksums"):
        assert s1[key] == s2[key], key
    # the files in time order, each with its first global index
    files = s2["files"]
    assert [f["path"] for f in files] == parts
    assert [f["first_index"] for f in files] == [1 + sum(f["records"] for f in files[:k]) for k in range(4)]
    assert s2["overlaps"] == []
    assert "files" not in s1                                   # single-file output unchanged


def test_every_index_maps_back_to_its_file(tmp_path):
    src = KERNEL / "concurrent_mixed.pcap"
    lt, recs = read_records(src)
    parts = split(src, tmp_path, 3)
    multi = api.analyze(parts)
    files = multi.info.files
    part_recs = {p: read_records(p)[1] for p in parts}
    for f in multi.flows[:50]:
        for t in f.transitions:
            if t.packet is None:
                continue
            path, local = locate(files, t.packet)
            assert part_recs[path][local - 1] == recs[t.packet - 1]     # same record as the whole file's index
    assert locate(files, 0) is None and locate(files, len(recs) + 1) is None


def test_overlapping_files_are_merged_by_time_and_reported(tmp_path):
    src = KERNEL / "concurrent_mixed.pcap"
    lt, recs = read_records(src)
    a = write(tmp_path / "even.pcap", lt, recs[0::2])
    b = write(tmp_path / "odd.pcap", lt, recs[1::2])
    whole = api.analyze(str(src))
    multi = api.analyze([b, a])
    assert [o["first"] for o in multi.info.overlaps] == [a] and multi.info.overlaps[0]["second"] == b
    assert any("merged by timestamp" in w for w in multi.info.warnings)
    files = multi.info.files

    def original(i):                                        # global index -> the whole file's index
        path, local = locate(files, i)
        return 2 * (local - 1) + (1 if path == a else 2)

    assert signature(multi, original) == signature(whole)


def test_single_file_reads_as_before(tmp_path):
    src = str(KERNEL / "time_wait_reuse.pcap")
    a = api.analyze(src)
    b = api.analyze([src])
    assert signature(a) == signature(b)
    assert type(api.open_engine("fast", [src])) is type(api.open_engine("fast", src))


def test_expand_directories_globs_and_errors(tmp_path):
    parts = split(KERNEL / "refused.pcap", tmp_path, 2, names=["b.pcap", "a.pcap"])
    (tmp_path / ".hidden").write_text("x")
    (tmp_path / "notes.txt").write_text("not a capture")
    left: list = []
    assert expand([str(tmp_path)], left) == sorted(parts)
    assert left == [str(tmp_path / "notes.txt")]
    an = api.analyze([str(tmp_path)])
    assert any("notes.txt" in w and "left out" in w for w in an.info.warnings)
    assert expand([str(tmp_path / "*.pcap")]) == sorted(parts)
    assert expand([parts[0], parts[0]]) == [parts[0]]
    with pytest.raises(CaptureError, match="no file matches"):
        expand([str(tmp_path / "nothing*.pcap")])
    with pytest.raises(CaptureError, match="stdin"):
        expand(["-", parts[0]])


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "tcpfsm.cli", *args], capture_output=True, text=True, timeout=120)


def test_cli_commands_take_many_files(tmp_path):
    src = KERNEL / "time_wait_reuse.pcap"
    parts = split(src, tmp_path, 3)
    one = run_cli("analyze", str(src), "--format", "json", "-q")
    many = run_cli("analyze", str(tmp_path), "--format", "json", "-q")
    assert one.returncode == 0 and many.returncode == 0, many.stderr
    d1, d2 = json.loads(one.stdout), json.loads(many.stdout)
    assert d1["flows"] == d2["flows"] and d1["anomalies"] == d2["anomalies"]
    assert [f["path"] for f in d2["summary"]["files"]] == parts
    tl = run_cli("timeline", *parts, "--flow", "1")
    assert tl.returncode == 0, tl.stderr
    assert f"({os.path.basename(parts[0])}:" in tl.stdout          # a packet named by file:index
    for cmd in (["netstat", "--at", "+0.5s"], ["states"], ["report"]):
        r = run_cli(cmd[0], *parts, *cmd[1:])
        r1 = run_cli(cmd[0], str(src), *cmd[1:])
        assert r.returncode == 0, r.stderr
        if cmd[0] != "report":                              # the report names its input
            assert r.stdout.splitlines()[1:] == r1.stdout.splitlines()[1:]
    bad = run_cli("analyze", str(tmp_path / "none*.pcap"))
    assert bad.returncode == 2 and bad.stderr.startswith("tcpfsm: error:") and "Traceback" not in bad.stderr
