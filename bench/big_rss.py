#!/usr/bin/env python3
"""Peak memory of tcpfsm on the >= 4 GiB capture (bench/out/big.pcap).

Runs   tcpfsm analyze bench/out/big.pcap --format json -o /dev/null --timings
and reports wall time, packets/s and peak RSS (ru_maxrss from os.wait4), plus
a trend sampled every --interval s from /proc/PID/status (VmRSS, VmHWM) and
/proc/PID/io (rchar: bytes read so far -> estimated packets so far).

If the run exceeds --max-seconds (default 600) or its RSS exceeds
--max-rss-mb (default 12000, to protect a shared machine) it is killed and
the figures observed up to then are reported (rate estimated from the bytes read or mmapped so far).
Results: table on stdout, JSON in bench/out/big.json.

    python3 bench/make_big.py && python3 bench/big_rss.py
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from run import count_packets, find_tcpfsm, parse_timings, tool_version  # noqa: E402

DEFAULT_CAPTURE = HERE / "out" / "big.pcap"
DEFAULT_JSON = HERE / "out" / "big.json"


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:", "RssFile:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0])          # kB
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("rchar:"):
                    out["rchar"] = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture", nargs="?", type=Path, default=DEFAULT_CAPTURE)
    ap.add_argument("--tcpfsm", metavar="CMD", help="command instead of the tcpfsm executable (shell-split)")
    ap.add_argument("--extra", default="", help="extra tcpfsm analyze options (shell-split), e.g. '--no-stream'")
    ap.add_argument("--interval", type=float, default=5.0, help="RSS sampling period, s (default 5)")
    ap.add_argument("--max-seconds", type=float, default=600, help="kill after this (default 600)")
    ap.add_argument("--max-rss-mb", type=float, default=12000, help="kill above this RSS (default 12000)")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = ap.parse_args()

    cap = args.capture.resolve()
    if not cap.exists():
        print(f"big_rss: {cap} missing; build it with: python3 bench/make_big.py", file=sys.stderr)
        return 1
    base = shlex.split(args.tcpfsm) if args.tcpfsm else find_tcpfsm()
    if not base:
        print("big_rss: tcpfsm not found (run `make venv`)", file=sys.stderr)
        return 1
    cmd = base + ["analyze", str(cap), "--format", "json", "-o", "/dev/null", "--timings"]
    cmd += shlex.split(args.extra)

    meta_path = cap.with_name(cap.stem + "_pcap.json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    size = cap.stat().st_size
    if meta.get("file_bytes") == size and meta.get("packets"):
        packets = meta["packets"]
    else:
        t0 = time.perf_counter()
        packets = count_packets(cap, keep=False)
        print(f"counted {packets:,} packets in {time.perf_counter() - t0:.1f}s")
    # warm the page cache (24 GB RAM: the file fits); the run then measures tcpfsm, not the disk
    t0 = time.perf_counter()
    subprocess.run(["cat", str(cap)], stdout=subprocess.DEVNULL, check=True)
    cat_s = time.perf_counter() - t0
    print(f"capture: {cap} ({packets:,} packets, {size / 1e9:.2f} GB); cat {cat_s:.1f}s")
    print(f"running: {shlex.join(cmd)}", flush=True)

    samples = []
    killed = None
    with tempfile.TemporaryFile() as errf:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf, cwd=ROOT)
        done = threading.Event()
        result: dict = {}

        def reaper():
            _, status, ru = os.wait4(p.pid, 0)
            result.update(status=status, ru=ru, t=time.perf_counter() - t0)
            done.set()
        threading.Thread(target=reaper, daemon=True).start()
        print(f"{'t s':>6} {'VmRSS MB':>9} {'anon MB':>9} {'file MB':>9} {'VmHWM MB':>9} {'done GB':>8} "
              f"{'~packets':>12} {'~pkt/s':>9}")
        while not done.wait(args.interval):
            st = proc_status(p.pid)
            if not st:
                continue
            t = time.perf_counter() - t0
            rchar = st.get("rchar", 0)
            # progress: bytes read() so far, or file pages mapped so far (tcpfsm mmaps plain files)
            done_b = max(rchar, st.get("RssFile", 0) * 1024)
            est = int(packets * min(done_b, size) / size)
            s = {"t": round(t, 1), "vmrss_mb": round(st.get("VmRSS", 0) / 1024, 1),
                 "rss_anon_mb": round(st.get("RssAnon", 0) / 1024, 1),
                 "rss_file_mb": round(st.get("RssFile", 0) / 1024, 1),
                 "vmhwm_mb": round(st.get("VmHWM", 0) / 1024, 1), "rchar": rchar, "est_packets": est}
            samples.append(s)
            print(f"{s['t']:>6.0f} {s['vmrss_mb']:>9.0f} {s['rss_anon_mb']:>9.0f} {s['rss_file_mb']:>9.0f} "
                  f"{s['vmhwm_mb']:>9.0f} {done_b / 1e9:>8.2f} {est:>12,} {est / t:>9,.0f}", flush=True)
            if t > args.max_seconds or s["vmrss_mb"] > args.max_rss_mb:
                killed = (f"killed after {t:.0f}s (limit {args.max_seconds:g}s)" if t > args.max_seconds
                          else f"killed at {s['vmrss_mb']:.0f} MB RSS (limit {args.max_rss_mb:g} MB)")
                print(f"big_rss: {killed}", flush=True)
                os.kill(p.pid, signal.SIGKILL)
                done.wait()
                break
        errf.seek(0)
        stderr = errf.read().decode("utf-8", "replace")
    seconds, ru = result["t"], result["ru"]
    rc = os.waitstatus_to_exitcode(result["status"])
    timings = parse_timings(stderr)
    peak_mb = ru.ru_maxrss / 1024
    last = samples[-1] if samples else None
    if killed:
        est = last["est_packets"] if last else 0
        pps = est / last["t"] if last else None
        print(f"\nINCOMPLETE ({killed}): ~{est:,} of {packets:,} packets "
              f"(~{100 * est / packets:.0f} %) in {seconds:.0f}s -> ~{pps:,.0f} packets/s; "
              f"peak RSS {peak_mb:.0f} MB")
    elif rc != 0:
        print(f"big_rss: tcpfsm failed (exit {rc}):\n{stderr[-2000:]}", file=sys.stderr)
        pps = None
    else:
        pps = packets / seconds
        print(f"\ntcpfsm on {size / 1e9:.2f} GB, {packets:,} packets: {seconds:.1f}s wall, "
              f"{pps:,.0f} packets/s, peak RSS {peak_mb:.0f} MB"
              f" ({'within' if peak_mb <= 300 else 'over'} the 300 MB target)")
        if timings:
            print("stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings["timings"].items()))
    # RSS trend: MB per million packets between the first and last quarter of samples
    peak_anon = max((x["rss_anon_mb"] for x in samples), default=None)
    if peak_anon is not None:
        print(f"largest sampled RssAnon (heap, excl. the mmapped file): {peak_anon:.0f} MB; "
              f"ru_maxrss includes file pages mapped from the capture")
    trend = None
    if len(samples) >= 4:
        a, b = samples[len(samples) // 4], samples[-1]
        if b["est_packets"] > a["est_packets"]:
            dp = (b["est_packets"] - a["est_packets"]) / 1e6
            trend = {"vmrss": round((b["vmrss_mb"] - a["vmrss_mb"]) / dp, 2),
                     "rss_anon": round((b["rss_anon_mb"] - a["rss_anon_mb"]) / dp, 2)}
            print(f"RSS trend: VmRSS {trend['vmrss']:+.1f}, RssAnon {trend['rss_anon']:+.1f} MB per million "
                  f"packets (samples at {a['t']:.0f}s .. {b['t']:.0f}s)")

    doc = {
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "capture": str(cap), "file_bytes": size, "packets": packets, "build": meta or None,
        "command": cmd, "version": None if args.tcpfsm else tool_version(base + ["--version"]),
        "complete": killed is None and rc == 0, "killed": killed, "exit_code": rc,
        "seconds": round(seconds, 2),
        "packets_per_s": round(pps, 1) if pps else None,
        "packets_per_s_note": None if not killed else "estimated at the last sample from /proc/PID/io rchar or RssFile (mmapped file pages)",
        "peak_rss_mb": round(peak_mb, 1), "target_rss_mb": 300,
        "max_sampled_rss_anon_mb": peak_anon,
        "peak_rss_note": "ru_maxrss counts resident pages of the mmapped capture too (RssFile); "
                         "RssAnon is the process's own heap",
        "rss_trend_mb_per_million_packets": trend,
        "tcpfsm_timings": timings,
        "page_cache_cat_seconds": round(cat_s, 2),
        "samples": samples,
        "stderr_tail": stderr[-2000:] if rc != 0 and not killed else None,
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"results: {args.json}")
    return 0 if (killed or rc == 0) else 1


if __name__ == "__main__":
    sys.exit(main())
