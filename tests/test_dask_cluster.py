"""The Dask run (tcpfsm.distributed) on a real local cluster -- `dask scheduler` and two `dask worker`
processes on 127.0.0.1, started here -- gives, on kernel recordings cut into rotated parts, the same flows,
states, transitions and findings as one process on the whole file; a worker killed mid-run is retried by
Dask with the same final answer; the merge of partial results is associative."""
from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")

from tcpfsm import api, distributed as tdist                      # noqa: E402
from tcpfsm.capture.multi import file_plan                         # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_multi_files import KERNEL, signature, split             # noqa: E402

SCENARIOS = ["concurrent_mixed", "time_wait_reuse", "syn_flood", "vanished_peer", "close_wait_leak",
             "lossy_bulk", "half_close", "simultaneous_close"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A scheduler and `n` workers as subprocesses (each its own PID, killed by PID)."""

    def __init__(self, n: int = 2, tmp: Path | None = None):
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.logdir = tmp
        self.procs: dict[str, subprocess.Popen] = {}
        self._start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"])
        for i in range(n):
            self.add_worker(f"w{i}")
        self.client = None
        deadline = time.monotonic() + 60
        while True:
            try:
                self.client = distributed.Client(self.address, timeout="5s")
                break
            except (OSError, TimeoutError):
                if time.monotonic() > deadline:
                    self.close()
                    raise
                time.sleep(0.5)
        self.wait_workers(n)

    def _start(self, name: str, args: list[str]) -> None:
        log = open(self.logdir / f"{name}.log", "w") if self.logdir else subprocess.DEVNULL
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def add_worker(self, name: str) -> None:
        self._start(name, ["worker", self.address, "--nworkers", "1", "--nthreads", "1", "--host", "127.0.0.1",
                           "--no-dashboard", "--name", name, "--no-nanny"])

    def wait_workers(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.client.scheduler_info(n_workers=-1)["workers"]) != n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster has {len(self.client.scheduler_info()['workers'])} workers, not {n}")
            time.sleep(0.2)

    def worker_address(self, name: str) -> str:
        for addr, w in self.client.scheduler_info(n_workers=-1)["workers"].items():
            if w.get("name") == name:
                return addr
        raise KeyError(name)

    def kill(self, name: str) -> None:
        p = self.procs[name]
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=20)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        for name in reversed(list(self.procs)):
            p = self.procs[name]
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=15)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(2, tmp_path_factory.mktemp("dask-logs"))
    try:
        yield c
    finally:
        c.close()


@pytest.mark.parametrize("name", SCENARIOS)
def test_cluster_run_equals_one_process_on_the_whole_file(tmp_path, cluster, name):
    src = KERNEL / f"{name}.pcap"
    whole = api.analyze(str(src), path_health=False)
    parts = split(src, tmp_path, 3)
    an = tdist.analyze(parts, client=cluster.client, partitions=5)
    assert signature(an) == signature(whole)
    assert [a.message for a in an.findings] == [a.message for a in whole.findings]
    assert [[a.message for a in f.anomalies] for f in an.flows] == [[a.message for a in f.anomalies]
                                                                     for f in whole.flows]
    assert an.pile_peaks == whole.pile_peaks
    s1, s2 = whole.summary(), an.summary()
    for key in ("records", "tcp_segments", "skipped", "flows", "states_at_end", "findings_by_severity", "first_ts",
                "last_ts", "checksums", "non_rfc_transitions", "timestamps_backwards", "duration"):
        assert s1[key] == s2[key], key
    assert [f["path"] for f in s2["files"]] == parts
    # what netstat and the state counts say, from the merged flows
    mid = (whole.start + whole.end) // 2
    assert [(r.host, r.local, r.remote, r.state, r.flow) for r in whole.netstat(mid).sockets] == \
        [(r.host, r.local, r.remote, r.state, r.flow) for r in an.netstat(mid).sockets]
    assert whole.states(0.5) == an.states(0.5)


def test_work_directory_and_one_partition_give_the_same(tmp_path, cluster):
    src = KERNEL / "concurrent_mixed.pcap"
    whole = api.analyze(str(src), path_health=False)
    parts = split(src, tmp_path, 4)
    work = tmp_path / "work"
    a = tdist.analyze(parts, client=cluster.client, partitions=7, workdir=str(work))
    b = tdist.analyze(parts, client=cluster.client, partitions=1)
    assert signature(a) == signature(b) == signature(whole)
    (work / "mine.npz").write_bytes(b"x")
    tdist.analyze(parts, client=cluster.client, partitions=2, workdir=str(work))
    assert os.listdir(work) == ["mine.npz"]                  # its own files removed, nothing else


@pytest.mark.parametrize("stage,spill", [("decode", False), ("judge", False), ("judge", True)])
def test_worker_killed_mid_run_is_retried_with_the_same_answer(tmp_path, stage, spill):
    """Worker w0 is killed (SIGKILL, by PID) once every file is decoded -- its decoded partitions are lost
    with it -- and before they are tracked; or once every partition is judged, its rendered flows lost
    before the driver streams them out: Dask recomputes them on the other worker. With a work directory
    (`spill`) the lost results are file names: the recomputed tasks read the spilled flows again."""
    src = KERNEL / "concurrent_mixed.pcap"
    whole = api.analyze(str(src), path_health=False)
    parts = split(src, tmp_path, 6)
    c = Cluster(2, tmp_path)
    killed = []
    written = {}
    try:
        w0 = c.worker_address("w0")

        def progress(stage_, done, total):
            if stage_ == stage and done == total and not killed:
                held = c.client.has_what().get(w0, ())
                killed.append(len(held))
                c.kill("w0")
                c.wait_workers(1)

        def render(an):
            import io
            out = io.BytesIO()
            tdist.write(an, out)
            written["doc"] = out.getvalue()

        an = tdist.analyze(parts, client=c.client, partitions=4, progress=progress,
                           render=render if stage == "judge" else None, fmt="jsonl" if stage == "judge" else None,
                           workdir=str(tmp_path / "work") if spill else None)
    finally:
        c.close()
    assert killed and killed[0] > 0           # w0 held data when it died
    assert [a.message for a in an.findings] == [a.message for a in whole.findings]
    if stage == "judge":
        assert written["doc"].splitlines()[:-1] == _document(whole, "jsonl").splitlines()[:-1]
        assert an.flows == [] and an.summary()["flows"] == len(whole.flows)   # the driver never held them
        with pytest.raises(ValueError, match="stayed on the Dask workers"):
            an.netstat(whole.start)
    else:
        assert signature(an) == signature(whole)


def _decoded_in_process(parts, nparts):
    """Decode each file in this process and plan as the driver does -> (pieces per partition in reading
    order, the plan, the capture's end)."""
    decoded = [tdist.decode_file(p, nparts) for p in parts]
    facts = [d[0] for d in decoded]
    order = file_plan(parts, [f.info.first_ts for f in facts])
    bases, base = [], 1
    for i in order:
        bases.append(base)
        base += facts[i].info.records
    end = max(f.info.last_ts for f in facts)
    plan = tdist.Plan(bases, [0] * len(order), [[0]] * len(order), False, end)
    return [[decoded[i][1][p] for i in order] for p in range(nparts)], plan, end


def _parts_in_process(parts, nparts, th=None):
    """Decode, track, number and judge each partition in this process (the tasks are plain functions) ->
    (numbered partitions, their index summaries, judged partitions, the capture's end)."""
    from tcpfsm.detect.rules import Thresholds
    th = th or Thresholds()
    pieces, plan, end = _decoded_in_process(parts, nparts)
    prof = api.get_profile("linux")
    tracked = [tdist.track_partition(pieces[p], plan, prof) for p in range(nparts)]
    numbered = _number(tracked, th)
    indexes = [n.index for n in numbered]
    newest = functools.reduce(lambda a, b: a.merge(b), indexes).newest
    judged = [tdist.judge_partition(n, newest, end, th) for n in numbered]
    return numbered, indexes, judged, end


def test_spilled_partitions_judge_the_same(tmp_path):
    """With a work directory, track pickles a partition's flows there and number and judge read them back
    (a worker then holds one partition's connections at a time): the same ids, findings, piles and rendered
    records as partitions held in memory."""
    from tcpfsm.detect.rules import Thresholds
    src = KERNEL / "concurrent_mixed.pcap"
    parts = split(src, tmp_path, 3)
    th = Thresholds()
    pieces, plan, end = _decoded_in_process(parts, 3)
    prof = api.get_profile("linux")
    work = tmp_path / "work"
    work.mkdir()
    runs = []
    for wd in (None, str(work)):
        tracked = [tdist.track_partition(pieces[p], plan, prof, workdir=wd) for p in range(3)]
        assert all(bool(t.spilled) == bool(wd) and (not wd or t.flows == []) for t in tracked)
        numbered = _number(tracked, th)
        newest = functools.reduce(lambda a, b: a.merge(b), [n.index for n in numbered]).newest
        judged = [tdist.judge_partition(n, newest, end, th, "json", keep_flows=False, parts=3, workdir=wd)
                  for n in numbered]
        runs.append([(j.summary.flows, j.summary.states_end, j.summary.chunks,
                      [tdist.chunk_of(j, "lines", i) for i in range(j.summary.chunks["lines"])],
                      [tdist.piles_of(j, h) for h in range(3)],
                      _findings(j.summary.rollups, end)) for j in judged])
    assert runs[0] == runs[1]
    assert sum(r[0] for r in runs[0]) == len(api.analyze(str(src), path_health=False).flows)
    assert any(n.endswith(".flows") for n in os.listdir(work)) and any(n.endswith(".chunk") for n in os.listdir(work))


def _findings(agg, end):
    """The aggregate findings of a merged summary (piles apart: they are fed, not merged)."""
    from tcpfsm.detect.aggregate import Aggregator
    agg = agg.summary()
    agg.piles = Aggregator(agg.th).piles
    return [(a.kind, a.severity, a.ts, a.ts_end, a.count, list(a.flows), a.message) for a in agg.finish([], end)]


@pytest.mark.parametrize("src", [KERNEL / "syn_flood.pcap", KERNEL / "concurrent_mixed.pcap",
                                 KERNEL.parent / "crafted" / "port_scan.pcap",
                                 KERNEL.parent / "crafted" / "syn_flood_spoofed.pcap"])
def test_merge_is_associative_and_commutative(tmp_path, src):
    """Merging the partitions' summaries (floods, scans, the newest connection per client, roll-ups) in any
    grouping gives the same findings, and those of one process (piles apart, which are fed, not merged)."""
    from tcpfsm.detect.aggregate import Aggregator
    whole = api.analyze(str(src), path_health=False)
    parts = split(src, tmp_path, 3)
    _n, indexes, judged, end = _parts_in_process(parts, 3)
    a, b, c = (i.merge(j.summary.rollups) for i, j in zip(indexes, judged))
    assert all(j.summary.flows for j in judged)           # every partition holds connections
    left, right, swapped = a.merge(b).merge(c), a.merge(b.merge(c)), c.merge(b.merge(a))
    empty = Aggregator(a.th).summary()
    assert _findings(left, end) == _findings(right, end) == _findings(swapped, end)
    assert _findings(a.merge(empty), end) == _findings(empty.merge(a), end) == _findings(a, end)  # identity
    want = [(a.kind, a.severity, a.ts, a.ts_end, a.count, list(a.flows), a.message) for a in whole.findings
            if not a.kind.endswith("pile")]
    assert [f for f in _findings(left, end) if not f[0].endswith("pile")] == want
    assert want                                            # the capture has aggregate findings to compare


@pytest.mark.parametrize("name", ["syn_flood", "concurrent_mixed", "close_wait_leak", "time_wait_reuse"])
def test_piles_replayed_per_host_bucket_equal_one_process(tmp_path, name):
    """Each host bucket's transitions from every partition through its own PileCounter, the counters joined
    (`PileCounter.absorb`): one process's pile peaks -- count, time and evidence -- for 1, 3 and 5 buckets."""
    from tcpfsm.detect.aggregate import Aggregator
    from tcpfsm.detect.piles import host_text
    from tcpfsm.detect.rules import Thresholds
    src = KERNEL / f"{name}.pcap"
    whole = api.analyze(str(src), path_health=False)
    assert whole.pile_peaks or name != "syn_flood"
    parts = split(src, tmp_path, 3)
    numbered, indexes, _judged, end = _parts_in_process(parts, 3)
    newest = functools.reduce(lambda a, b: a.merge(b), indexes).newest
    th = Thresholds()
    for buckets in (1, 3, 5):
        judged = [tdist.judge_partition(tdist.Numbered(n.flows, n.index), newest, end, th, parts=buckets)
                  for n in numbered]
        piles = Aggregator(th).piles
        for h in range(buckets):
            piles.absorb(tdist.replay_piles([tdist.piles_of(j, h) for j in judged], th, end))
        assert host_text(piles.finish(end)) == whole.pile_peaks, buckets   # (the counter keys hosts by address)


def _range_ids(mine: list, ranges: int) -> list:
    """The numbering tasks run in this process, in the driver's order: samples, splitters, slices per range,
    ranks per range, offsets -> each partition's ids."""
    import numpy as np
    tracked = [tdist.Tracked([], m[:, 0].copy(), m[:, 1].copy(), []) for m in mine]
    spl = tdist.splitters_of([tdist.sample_of(t) for t in tracked], ranges)
    splits = [tdist.split_keys(t, spl) for t in tracked]
    ranked = [tdist.rank_range([tdist.item_of(s, r) for s in splits]) for r in range(len(spl) + 1)]
    sizes = [x[1] for x in ranked]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist()
    return [tdist.ids_from([x[0][p] for x in ranked], offsets) for p in range(len(mine))]


def _number(tracked, th):
    """number_partition over in-process partitions, numbered by key range as the driver does."""
    ids = _range_ids([tdist.keys_of(t) for t in tracked], len(tracked))
    return [tdist.number_partition(t, [i - 1], [0], th) for t, i in zip(tracked, ids)]   # as ranks in one range


@pytest.mark.parametrize("parts,ranges", [(4, 4), (4, 1), (4, 9), (1, 3), (6, 64)])
def test_global_ids_are_the_rank_over_every_partition(parts, ranges):
    """Ids by key range (a sample sort) equal each key's rank among every partition's keys, with many equal
    times (ties broken by packet), empty partitions and more ranges than samples can fill."""
    import numpy as np
    rng = np.random.default_rng(7)
    ts = rng.integers(0, 50, 3000)                         # many equal times: ties broken by packet
    keys = np.unique(np.stack([ts, rng.permutation(3000)], axis=1), axis=0)
    part = rng.integers(0, parts, len(keys))
    if parts > 4:
        part[part == 2] = 3                               # an empty partition
    mine = [keys[part == p] for p in range(parts)]         # each sorted (np.unique sorts rows)
    got = np.empty(len(keys), np.int64)
    for p, ids in enumerate(_range_ids(mine, ranges)):
        got[part == p] = ids
    assert got.tolist() == list(range(1, len(keys) + 1))
    few = [keys[:3], keys[3:3]]                            # fewer keys than ranges
    assert np.concatenate(_range_ids(few, 8)).tolist() == [1, 2, 3]


def test_reuse_across_partitions_keeps_its_link(tmp_path):
    """TIME_WAIT reuse names the older flow by id: the ids survive the global renumbering."""
    src = KERNEL / "time_wait_reuse.pcap"
    whole = api.analyze(str(src), path_health=False)
    parts = split(src, tmp_path, 2)
    numbered, *_ = _parts_in_process(parts, 4)
    flows = sorted((f for n in numbered for f in n.flows), key=lambda f: f.id)
    want = [(f.id, f.reuse_of) for f in whole.flows]
    assert [(f.id, f.reuse_of) for f in flows] == want
    assert any(r is not None for _, r in want)


def _document(an, fmt: str) -> bytes:
    import io
    from tcpfsm.render import records
    out = io.BytesIO()
    if fmt == "csv":
        from tcpfsm.render import text
        class Sink:                                    # the byte sink's text side, into `out`
            def text(self, s):
                out.write(s.encode())
        text.write_flows_csv(an.flows, Sink())
        return out.getvalue()
    (records.write_analysis_json if fmt == "json" else records.write_event_stream)(an, out)
    return out.getvalue()


@pytest.mark.parametrize("name", ["concurrent_mixed", "syn_flood", "vanished_peer", "time_wait_reuse"])
def test_cli_json_and_jsonl_stream_from_the_workers(tmp_path, cluster, name):
    """`analyze --scheduler ... --format json|jsonl -o F`: the partitions render the flows and the driver
    merges them in flow order (it never holds the connections); the document is one process's, byte for
    byte in the flows, findings and events (the capture line, warnings and max_tracked aside)."""
    src = KERNEL / f"{name}.pcap"
    whole = api.analyze(str(src), path_health=False)
    parts = split(src, tmp_path, 3)
    # one capture also through a work directory (flows and rendered chunks spilled there between stages)
    runs = [(f, []) for f in ("json", "jsonl", "csv")]
    if name == "concurrent_mixed":
        runs += [(f, ["--workdir", str(tmp_path / "work")]) for f in ("json", "jsonl", "csv")]
    for fmt, extra in runs:
        out = tmp_path / f"out.{fmt}"
        r = subprocess.run([sys.executable, "-m", "tcpfsm.cli", "analyze", *parts, "--scheduler", cluster.address,
                            "--format", fmt, "-o", str(out), "-q", *extra], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr
        want, got = _document(whole, fmt), out.read_bytes()
        if fmt == "csv":
            assert got == want and got.count(b"\n") == len(whole.flows) + 1
        elif fmt == "json":
            w, g = json.loads(want), json.loads(got)
            assert got.split(b'"flows": [')[1].split(b'],\n "anomalies"')[0] == \
                want.split(b'"flows": [')[1].split(b'],\n "anomalies"')[0]
            assert g["anomalies"] == w["anomalies"]
            for key, v in w["summary"].items():
                if key not in ("warnings", "max_tracked"):
                    assert g["summary"][key] == v, key
        else:
            w, g = want.splitlines(), got.splitlines()
            assert g[:-1] == w[:-1]                        # every event but the last (stats), byte for byte
            ws, gs = json.loads(w[-1]), json.loads(g[-1])
            assert gs["event"] == "stats" and gs["summary"]["flows"] == ws["summary"]["flows"]
            assert gs["summary"]["states_at_end"] == ws["summary"]["states_at_end"]


@pytest.mark.parametrize("spill", [False, True])
def test_netstat_states_and_timeline_ask_the_workers(tmp_path, cluster, spill):
    """netstat, state counts and timelines on Dask: the connections stay on the workers (in memory, or in
    the work directory's spill files) and each partition answers for its own (only the flows a timeline
    chooses travel); the joined answer is one process's -- through the API (the driver's Analysis holds no
    flow) and through the CLI, byte for byte."""
    src = KERNEL / "concurrent_mixed.pcap"
    whole = api.analyze(str(src), path_health=False)
    parts = split(src, tmp_path, 3)
    mid = (whole.start + whole.end) // 2
    ats = [whole.start, mid, whole.end, whole.start + 10**9]
    got = {}

    def ask(an):
        got["flows"] = len(an.flows)
        got["snaps"] = an.netstat_many(ats)
        got["host"] = an.netstat_many(ats, host=whole.flows[0].server_ip, listening=False, port=whole.flows[0].server_port)
        got["states"] = an.states(0.25)
        got["select"] = an.select(port=whole.flows[0].server_port, states=["FIN_WAIT_2"])
        got["ids"] = an.select(flow_ids=[7, 3, 7])
        with pytest.raises(ValueError, match="no flow"):
            an.select(flow_ids=[len(whole.flows) + 1])
        got["filtered"] = an.states(0.5, port=whole.flows[0].server_port, states=["ESTABLISHED", "TIME_WAIT"])
        with pytest.raises(ValueError):
            an.states(0)
    work = str(tmp_path / "work") if spill else None
    tdist.analyze(parts, client=cluster.client, partitions=3, render=ask, fmt=None, workdir=work)
    assert got["flows"] == 0
    key = lambda snaps: [(s.at, [(r.host, r.local, r.remote, r.state, r.flow, r.alt) for r in s.sockets]) for s in snaps]
    assert key(got["snaps"]) == key(whole.netstat_many(ats))
    assert any(s.sockets for s in got["snaps"])
    h = whole.flows[0]
    assert key(got["host"]) == key(whole.netstat_many(ats, host=h.server_ip, listening=False, port=h.server_port))
    assert got["states"] == whole.states(0.25)
    fl = lambda flows: [(f.id, f.client, f.server, [(t.ts, t.endpoint, t.new) for t in f.transitions],
                         [a.kind for a in f.anomalies]) for f in flows]
    assert fl(got["select"]) == fl(whole.select(port=whole.flows[0].server_port, states=["FIN_WAIT_2"]))
    assert got["select"] and fl(got["ids"]) == fl(whole.select(flow_ids=[7, 3, 7]))
    assert got["filtered"] == whole.states(0.5, port=h.server_port, states=["ESTABLISHED", "TIME_WAIT"])
    when = f"+{(mid - whole.start) / 1e9:.3f}s"
    h = whole.flows[3]
    for cmd in (["netstat", "--at", when, "--format", "json"], ["netstat", "--at", when],   # text: its header counts
                ["states", "--interval", "500ms", "--format", "csv"],
                ["timeline", "--host", h.client_ip, "--format", "json"], ["timeline", "--flow", "5", "--flow", "2"],
                ["timeline", "--port", str(h.server_port), "--state", "TIME_WAIT", "--format", "md"]):
        one = subprocess.run([sys.executable, "-m", "tcpfsm.cli", cmd[0], *parts, *cmd[1:]], capture_output=True,
                             text=True, timeout=300)
        extra = ["--workdir", str(tmp_path / "w2")] if spill else []
        many = subprocess.run([sys.executable, "-m", "tcpfsm.cli", cmd[0], *parts, *cmd[1:], "--scheduler",
                               cluster.address, *extra], capture_output=True, text=True, timeout=300)
        assert one.returncode == 0 and many.returncode == 0, many.stderr
        assert many.stdout == one.stdout and one.stdout.strip()


def test_cli_workers_option(tmp_path):
    parts = split(KERNEL / "close_wait_leak.pcap", tmp_path, 2)
    r = subprocess.run([sys.executable, "-m", "tcpfsm.cli", "analyze", *parts, "--workers", "2", "--format", "json",
                        "-q"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    whole = api.analyze(str(KERNEL / "close_wait_leak.pcap"), path_health=False)
    doc = json.loads(r.stdout)
    assert [f["id"] for f in doc["flows"]] == [f.id for f in whole.flows]
    assert [a["kind"] for a in doc["anomalies"]] == [a.kind for a in whole.findings]
    bad = subprocess.run([sys.executable, "-m", "tcpfsm.cli", "analyze", *parts, "--scheduler",
                          f"tcp://127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("tcpfsm: error:"), bad.stderr


def test_urls_are_fetched_by_the_workers(tmp_path, cluster):
    """A URL (here file://, any fsspec protocol the workers have) is copied to the worker, then decoded."""
    src = KERNEL / "time_wait_reuse.pcap"
    whole = api.analyze(str(src), path_health=False)
    parts = split(src, tmp_path, 2)
    an = tdist.analyze(["file://" + p for p in parts], client=cluster.client, partitions=3)
    assert signature(an) == signature(whole)
    assert [f["path"] for f in an.info.files] == ["file://" + p for p in parts]
    with pytest.raises(Exception, match="cannot fetch"):
        tdist.analyze(["file://" + str(tmp_path / "missing.pcap")], client=cluster.client)


def test_overlapping_files_merge_as_in_one_process(tmp_path, cluster):
    from test_multi_files import read_records, write
    lt, recs = read_records(KERNEL / "concurrent_mixed.pcap")
    a = write(tmp_path / "a.pcap", lt, recs[0::2])
    b = write(tmp_path / "b.pcap", lt, recs[1::2])
    one = api.analyze([b, a], path_health=False)
    an = tdist.analyze([b, a], client=cluster.client, partitions=4)
    assert an.info.overlaps == one.info.overlaps and an.info.overlaps
    assert an.info.files == one.info.files
    assert signature(an) == signature(one)
    assert [a.message for a in an.findings] == [a.message for a in one.findings]
