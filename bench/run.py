#!/usr/bin/env python3
"""Benchmark tcpfsm against tshark on the same capture, in the same run.

For each tool, --repeat times (best run reported):
    tcpfsm:  tcpfsm analyze FILE --format json -o /dev/null
    tshark:  tshark -r FILE -q -z conv,tcp            (stdout to /dev/null)

Wall time is time.perf_counter() around Popen .. os.wait4(); peak RSS is the
child's ru_maxrss from os.wait4() (KiB on Linux; includes any grandchildren
the child waited for). Results are printed as a table and written as JSON to
bench/out/results.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_CAPTURE = HERE / "out" / "bench.pcap"
DEFAULT_RESULTS = HERE / "out" / "results.json"


class BenchError(Exception):
    pass


def count_packets(path: Path) -> int:
    """Record count of a classic pcap (reads only the 16-byte record headers).
    Falls back to capinfos for anything else (e.g. pcapng)."""
    with open(path, "rb") as f:
        hdr = f.read(24)
        order = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<",
                 b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"}.get(hdr[:4])
        if order is None:
            return count_with_capinfos(path)
        data = f.read()          # also warms the page cache for both tools
    rec = struct.Struct(order + "8xI")        # incl_len at offset 8
    off, n, count = 0, len(data), 0
    while off + 16 <= n:
        off += 16 + rec.unpack_from(data, off)[0]
        count += 1
    return count


def count_with_capinfos(path: Path) -> int:
    if not shutil.which("capinfos"):
        raise BenchError(f"{path}: not a classic pcap and capinfos is not installed")
    r = subprocess.run(["capinfos", "-M", "-c", "-T", "-r", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"capinfos failed on {path}:\n{r.stderr.strip()}")
    return int(r.stdout.strip().split("\t")[-1])


def find_tcpfsm() -> list[str] | None:
    venv = ROOT / ".venv" / "bin" / "tcpfsm"
    if venv.exists():
        return [str(venv)]
    on_path = shutil.which("tcpfsm")
    return [on_path] if on_path else None


def tail(text: str, n: int = 20) -> str:
    lines = text.rstrip().splitlines()
    return "\n".join("    " + l for l in lines[-n:]) or "    (stderr was empty)"


def run_once(cmd: list[str], timeout: float) -> dict:
    """Run cmd with stdout to /dev/null; return wall seconds and rusage."""
    with tempfile.TemporaryFile() as errf:   # a file, so a chatty child can't block on a pipe
        t0 = time.perf_counter()
        try:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=errf, cwd=ROOT)
        except OSError as e:
            raise BenchError(f"could not start {cmd[0]}: {e}")
        timed_out = threading.Event()

        def kill():
            timed_out.set()
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        errf.seek(0)
        stderr = errf.read().decode("utf-8", "replace")
    if timed_out.is_set():
        raise BenchError(f"timed out after {timeout:g}s: {shlex.join(cmd)}\n"
                         f"  last lines of stderr:\n{tail(stderr)}")
    if p.returncode != 0:
        how = (f"killed by signal {-p.returncode}" if p.returncode < 0
               else f"exit status {p.returncode}")
        raise BenchError(f"command failed ({how}): {shlex.join(cmd)}\n"
                         f"  last lines of stderr:\n{tail(stderr)}")
    return {"seconds": seconds, "peak_rss_kib": ru.ru_maxrss,
            "user_s": ru.ru_utime, "sys_s": ru.ru_stime}


def tool_version(cmd: list[str]) -> str | None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = (r.stdout or r.stderr).strip().splitlines()
    return out[0] if out and r.returncode == 0 else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture", nargs="?", type=Path, default=DEFAULT_CAPTURE,
                    help="pcap to analyse (default: %(default)s)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool; best reported")
    ap.add_argument("--tools", default="tcpfsm,tshark",
                    help="comma-separated subset of tcpfsm,tshark (default: %(default)s)")
    ap.add_argument("--tcpfsm", metavar="CMD",
                    help="command used instead of the tcpfsm executable (shell-split; "
                         "'analyze FILE --format json -o /dev/null' is appended)")
    ap.add_argument("--timeout", type=float, default=3600, help="per run, seconds")
    ap.add_argument("--json", type=Path, default=DEFAULT_RESULTS,
                    help="results file (default: %(default)s)")
    args = ap.parse_args()

    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    bad = set(tools) - {"tcpfsm", "tshark"}
    if bad or not tools or args.repeat < 1:
        ap.error(f"bad --tools {args.tools!r} or --repeat {args.repeat}")

    cap = args.capture.resolve()
    if not cap.exists():
        raise BenchError(f"{cap} does not exist; record it with: python3 bench/make_capture.py")

    cmds: dict[str, list[str]] = {}
    versions: dict[str, str | None] = {}
    if "tcpfsm" in tools:
        base = shlex.split(args.tcpfsm) if args.tcpfsm else find_tcpfsm()
        if not base:
            raise BenchError("tcpfsm not found (neither .venv/bin/tcpfsm nor tcpfsm on PATH); "
                             "run `make venv`, or pass --tcpfsm CMD, or --tools tshark")
        cmds["tcpfsm"] = base + ["analyze", str(cap), "--format", "json", "-o", "/dev/null"]
        versions["tcpfsm"] = None if args.tcpfsm else tool_version(base + ["--version"])
    if "tshark" in tools:
        if not shutil.which("tshark"):
            raise BenchError("tshark not found on PATH (apt-get install tshark)")
        cmds["tshark"] = ["tshark", "-r", str(cap), "-q", "-z", "conv,tcp"]
        versions["tshark"] = tool_version(["tshark", "--version"])

    t0 = time.perf_counter()
    packets = count_packets(cap)
    size = cap.stat().st_size
    print(f"capture: {cap} ({packets:,} packets, {size / 1e6:.1f} MB; "
          f"counted in {time.perf_counter() - t0:.2f}s)")

    runs: dict[str, list[dict]] = {t: [] for t in cmds}
    for i in range(args.repeat):
        for tool, cmd in cmds.items():           # interleaved, so drift hits both
            print(f"  run {i + 1}/{args.repeat} {tool}: {shlex.join(cmd)}", flush=True)
            r = run_once(cmd, args.timeout)
            print(f"    {r['seconds']:.2f}s, {r['peak_rss_kib'] / 1024:.1f} MB peak RSS",
                  flush=True)
            runs[tool].append(r)

    results: dict[str, dict] = {}
    for tool, rs in runs.items():
        best = min(rs, key=lambda r: r["seconds"])
        results[tool] = {
            "command": cmds[tool],
            "version": versions.get(tool),
            "seconds": round(best["seconds"], 4),
            "packets_per_s": round(packets / best["seconds"], 1),
            "peak_rss_mb": round(min(r["peak_rss_kib"] for r in rs) / 1024, 1),
            "runs": [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}
                     for r in rs],
        }
    ratio = None
    if "tcpfsm" in results and "tshark" in results:
        ratio = results["tcpfsm"]["packets_per_s"] / results["tshark"]["packets_per_s"]

    print()
    hdr = f"{'tool':<8} {'seconds':>9} {'packets/s':>12} {'peak RSS MB':>12} {'vs tshark':>10}"
    print(hdr)
    print("-" * len(hdr))
    for tool, r in results.items():
        vs = ""
        if tool == "tcpfsm" and ratio is not None:
            vs = f"{ratio:.2f}x"
        elif tool == "tshark":
            vs = "1.00x"
        print(f"{tool:<8} {r['seconds']:>9.2f} {r['packets_per_s']:>12,.0f} "
              f"{r['peak_rss_mb']:>12.1f} {vs:>10}")
    if ratio is not None:
        print(f"\ntcpfsm packets/s / tshark packets/s = {ratio:.3f} "
              f"({'tcpfsm faster' if ratio > 1 else 'tshark faster'}); "
              f"best of {args.repeat}")

    doc = {
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "capture": str(cap),
        "file_bytes": size,
        "packets": packets,
        "repeat": args.repeat,
        "best_of": "fastest run for seconds and packets_per_s; lowest peak RSS",
        "tools": results,
        "ratio_packets_per_s_tcpfsm_over_tshark": round(ratio, 4) if ratio is not None else None,
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(),
                 "python": platform.python_version(), "machine": platform.machine()},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        sys.exit(1)
