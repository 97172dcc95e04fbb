#!/usr/bin/env python3
"""Scale figures of the Dask run (tcpfsm.distributed, issue 11): one capture cut into rotated parts, analysed
by one process (the whole file) and on a local Dask cluster of 1 and 2 worker processes (the parts).

    python3 bench/scale.py                                  # bench/out/big.pcap if built, else bench.pcap
    python3 bench/scale.py --capture bench/out/bench.pcap --parts 4
    python3 bench/scale.py --sweep bench/out/flood_200000.pcap,bench/out/open_200000.pcap --workers 2 \
        --before /work/main          # peak memory against connections, this code and another checkout's

Each run is its own process (peak memory is per process): the single-process run is
`tcpfsm analyze WHOLE --format json -o /dev/null -q` (the CLI's defaults: path health on, streaming over
1 GiB), timed with its peak RSS from os.wait4. A Dask run starts a LocalCluster of N workers, analyses the
parts (tcpfsm.distributed.analyze) as `analyze --format json` does -- the flows rendered on the workers and
streamed through the driver to /dev/null (`--gather` in the child: every flow gathered first, as the other
commands do) -- and reports its wall time (cluster start-up apart), the driver's peak RSS and each worker's
(ru_maxrss, asked of the workers before they stop). The parts are cut with `editcap -c` (packets per part) into bench/out/scale/, reused when present; over
1 GiB the decoded segments go to bench/out/scale/work (.npz), not worker memory.
Results: a table on stdout, JSON in bench/out/scale.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"


def packets(path: Path) -> int:
    out = subprocess.run(["capinfos", "-M", "-c", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1].split(":")[-1])


def cut(capture: Path, parts: int, outdir: Path) -> list[Path]:
    """`editcap -c` parts of `capture` (as `tcpdump -C` rotates), reused when already cut from this file."""
    outdir.mkdir(parents=True, exist_ok=True)
    stamp = outdir / "source.json"
    want = {"capture": str(capture), "bytes": capture.stat().st_size, "parts": parts}
    have = sorted(outdir.glob("part_*"))
    if stamp.exists() and json.loads(stamp.read_text()) == want and have:
        return have
    for p in have:
        p.unlink()
    n = packets(capture)
    subprocess.run(["editcap", "-F", "pcap", "-c", str(math.ceil(n / parts)), str(capture),
                    str(outdir / "part.pcap")], check=True)
    stamp.write_text(json.dumps(want))
    return sorted(outdir.glob("part_*"))


def single(capture: Path) -> dict:
    exe = Path(sys.executable).parent / "tcpfsm"
    t0 = time.perf_counter()
    p = subprocess.Popen([str(exe), "analyze", str(capture), "--format", "json", "-o", "/dev/null", "-q"],
                         stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode()
    if status:
        raise SystemExit(f"single run failed: {err}")
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(ru.ru_maxrss / 1024, 1)}


def dask_run(parts: list[Path], workers: int, workdir: Path | None, gather: bool = False,
             python: str = sys.executable, script: str = __file__) -> dict:
    """In a child process (this script with --child): its own driver peak. `python`/`script`: another
    checkout's, to measure its code the same way (the "before" figures)."""
    out = subprocess.run([python, script, "--child", str(workers), str(workdir or ""),
                          *(["--gather"] if gather else []), *map(str, parts)], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"dask run failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def child(workers: int, workdir: str, parts: list[str], gather: bool = False) -> None:
    """`analyze PARTS --workers N --format json -o /dev/null`: by default as the CLI runs it, the flows
    rendered on the workers and streamed through the driver; `gather`: every flow gathered to the driver
    (what timeline, netstat and the other formats do)."""
    import logging

    import distributed

    from tcpfsm import distributed as tdist
    from tcpfsm.render import records
    from tcpfsm.render.output import Output

    t0 = time.perf_counter()
    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    t1 = time.perf_counter()
    streamed = not gather and hasattr(tdist, "write")

    def render(an):
        with Output("/dev/null") as o:
            tdist.write(an, o)

    if streamed:
        an = tdist.analyze(parts, client=client, workdir=workdir or None, render=render, fmt="json")
    else:
        an = tdist.analyze(parts, client=client, workdir=workdir or None)
        with Output("/dev/null") as o:
            records.write_analysis_json(an, o)
    t2 = time.perf_counter()
    peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    client.close()
    cluster.close()
    print(json.dumps({"wall_s": round(t2 - t1, 2), "cluster_start_s": round(t1 - t0, 2),
                      "stages_s": {k: round(v, 2) for k, v in an.timings.items()},
                      "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "worker_peak_rss_mb": sorted(round(v / 1024, 1) for v in peaks.values()),
                      "flows": an.summary()["flows"], "findings": len(an.findings), "partitions": an.partitions,
                      "mode": "streamed" if streamed else "gathered"}))


def sweep(captures: list[Path], parts: int, workers: int, before: str | None, out: Path) -> None:
    """Driver and worker peak RSS against the number of connections: each capture cut into `parts`, run on
    `workers` workers, streamed (this checkout) and, with `before` (another checkout's root), by that code."""
    rows = []
    for cap in captures:
        cut_parts = cut(cap, parts, OUT / "scale" / cap.stem)
        row = {"capture": str(cap), "bytes": cap.stat().st_size, "load_before": os.getloadavg()[0],
               "after": dask_run(cut_parts, workers, None)}
        if before:
            root = Path(before)
            row["before"] = dask_run(cut_parts, workers, None, python=str(root / ".venv" / "bin" / "python"),
                                     script=str(root / "bench" / "scale.py"))
        rows.append(row)
        out.write_text(json.dumps(rows, indent=1))
        for k in ("before", "after"):
            if k in row:
                d = row[k]
                print(f"{cap.name:<22}{k:<7}{d['flows']:>10,} flows  wall {d['wall_s']:>7} s  driver "
                      f"{d['driver_peak_rss_mb']:>7} MB  workers {'/'.join(map(str, d['worker_peak_rss_mb']))} MB",
                      flush=True)
    print(f"results: {out}")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        gather = len(sys.argv) > 4 and sys.argv[4] == "--gather"
        return child(int(sys.argv[2]), sys.argv[3], sys.argv[4 + gather:], gather)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    big = OUT / "big.pcap"
    ap.add_argument("--capture", type=Path, default=big if big.exists() else OUT / "bench.pcap")
    ap.add_argument("--parts", type=int, default=4, help="rotated parts to cut the capture into (default 4)")
    ap.add_argument("--workers", default="1,2", help="Dask cluster sizes to run (default 1,2)")
    ap.add_argument("--json", type=Path, default=OUT / "scale.json")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="decoded segments to .npz files there, not worker memory (default: bench/out/scale/work "
                         "for captures over 1 GiB)")
    ap.add_argument("--sweep", default=None, metavar="CAP,CAP,...",
                    help="peak memory against connections instead: each capture in --parts parts on the largest "
                         "--workers cluster (results in bench/out/scale_sweep.json)")
    ap.add_argument("--before", default=None, metavar="CHECKOUT",
                    help="with --sweep: also run another checkout's code (its .venv), e.g. /work/main")
    args = ap.parse_args()
    if args.sweep:
        return sweep([Path(c) for c in args.sweep.split(",")], args.parts,
                     max(int(x) for x in args.workers.split(",")), args.before, OUT / "scale_sweep.json")
    if not args.capture.exists():
        raise SystemExit(f"{args.capture}: no capture (make bench / make bench-big first)")
    parts = cut(args.capture, args.parts, OUT / "scale")
    workdir = args.workdir or (OUT / "scale" / "work" if args.capture.stat().st_size > 1 << 30 else None)
    res = {"capture": str(args.capture), "bytes": args.capture.stat().st_size, "parts": len(parts),
           "part_bytes": [p.stat().st_size for p in parts], "cpus": os.cpu_count(), "machine": platform.machine(),
           "load_before": os.getloadavg()[0], "workdir": str(workdir) if workdir else None}
    res["single"] = single(args.capture)
    for n in [int(x) for x in args.workers.split(",")]:
        res[f"dask_{n}"] = dask_run(parts, n, workdir)
    args.json.write_text(json.dumps(res, indent=1))
    print(f"{args.capture} ({res['bytes'] / 2**20:.0f} MiB) in {len(parts)} parts, {res['cpus']} CPUs "
          f"(load {res['load_before']:.1f} before)")
    print(f"{'run':<22}{'wall s':>8}{'peak RSS MB':>28}")
    print(f"{'one process (CLI)':<22}{res['single']['wall_s']:>8}{res['single']['peak_rss_mb']:>28}")
    for n in [int(x) for x in args.workers.split(",")]:
        d = res[f"dask_{n}"]
        mem = f"driver {d['driver_peak_rss_mb']}, workers {'/'.join(map(str, d['worker_peak_rss_mb']))}"
        print(f"{f'Dask, {n} worker(s)':<22}{d['wall_s']:>8}{mem:>28}   stages {d['stages_s']}, "
              f"cluster start {d['cluster_start_s']} s")
    print(f"results: {args.json}")


if __name__ == "__main__":
    main()
