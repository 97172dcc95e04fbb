#!/usr/bin/env python3
"""Benchmark tcpfsm against other TCP analysers on the same capture, in the same run.

For each tool, --repeat times, interleaved (best run reported):
    cat       cat FILE > /dev/null        (the file from the page cache: the floor)
    tcpfsm    tcpfsm analyze FILE --format json -o /dev/null --timings
    tshark    tshark -r FILE -q -z conv,tcp
    tcptrace  tcptrace -n FILE
    argus     argus -r FILE -w - | ra -r -      (one pipeline: combined wall time,
                                                 max of the two peak RSS)
    dpkt      python bench/dpkt_loop.py FILE   (dpkt parse loop, no state)
    scapy     python bench/scapy_loop.py SUBSET (scapy PcapReader on the first
                                                 --scapy-packets records)
and, only if asked with --tools, dpkt-tcpfsm (tcpfsm's dpkt reference decoder,
bench/dpkt_loop.py --tcpfsm-decoder).

Wall time is time.perf_counter() from the first Popen to the last os.wait4();
peak RSS is the tool's ru_maxrss as reported by GNU time -f %M wrapped around
each command (falls back to os.wait4's ru_maxrss, whose floor is this
harness's own RSS, when /usr/bin/time is missing). stdout of
every tool goes to /dev/null (for the argus pair: ra's). A tool that is not
installed is skipped with a printed reason; a baseline that fails is reported
and the run goes on (exit status 1 at the end); tcpfsm failing stops the run.
Results: a table on stdout, JSON in bench/out/results.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
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
ALL_TOOLS = ["cat", "tcpfsm", "tshark", "tcptrace", "argus", "dpkt", "scapy", "dpkt-tcpfsm"]
DEFAULT_TOOLS = ALL_TOOLS[:-1]
PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<",
               b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"}


class BenchError(Exception):
    pass


def count_packets(path: Path, keep: bool = True) -> int:
    """Record count of a classic pcap (walks the 16-byte record headers).
    keep=True reads the whole file at once (also warms the page cache for the
    tools); keep=False walks it in 16 MiB chunks (for files larger than RAM).
    Falls back to capinfos for anything else (e.g. pcapng)."""
    with open(path, "rb") as f:
        hdr = f.read(24)
        order = PCAP_MAGICS.get(hdr[:4])
        if order is None:
            return count_with_capinfos(path)
        rec = struct.Struct(order + "8xI")        # incl_len at offset 8
        count, buf, off = 0, b"", 0
        chunk = -1 if keep else 16 << 20
        while True:
            more = f.read(chunk)
            if not more:
                break
            buf = buf[off:] + more
            off, n = 0, len(buf)
            while off + 16 <= n:
                nxt = off + 16 + rec.unpack_from(buf, off)[0]
                if nxt > n:
                    break
                off = nxt
                count += 1
            if keep:
                break
    return count


def count_with_capinfos(path: Path) -> int:
    if not shutil.which("capinfos"):
        raise BenchError(f"{path}: not a classic pcap and capinfos is not installed")
    r = subprocess.run(["capinfos", "-M", "-c", "-T", "-r", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"capinfos failed on {path}:\n{r.stderr.strip()}")
    return int(r.stdout.strip().split("\t")[-1])


def make_subset(src: Path, dst: Path, n: int) -> int:
    """Copy the pcap header and the first n records of src to dst (classic pcap only).
    Reuses dst if it is newer than src. Returns the records in dst."""
    with open(src, "rb") as f:
        hdr = f.read(24)
        order = PCAP_MAGICS.get(hdr[:4])
        if order is None:
            raise BenchError(f"{src}: scapy subset needs a classic pcap")
        if dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
            have = count_packets(dst)
            if have == n or (have < n and have == count_packets(src)):
                return have
        rec = struct.Struct(order + "8xI")
        parts, count = [hdr], 0
        while count < n:
            rh = f.read(16)
            if len(rh) < 16:
                break
            body = f.read(rec.unpack_from(rh)[0])
            parts += (rh, body)
            count += 1
    tmp = dst.with_name(dst.name + ".part")
    tmp.write_bytes(b"".join(parts))
    tmp.replace(dst)
    return count


def find_tcpfsm() -> list[str] | None:
    venv = ROOT / ".venv" / "bin" / "tcpfsm"
    if venv.exists():
        return [str(venv)]
    on_path = shutil.which("tcpfsm")
    return [on_path] if on_path else None


def find_python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def parse_timings(stderr: str) -> dict | None:
    """The --timings JSON line from tcpfsm's stderr (last line that parses and has 'timings')."""
    for line in reversed(stderr.splitlines()):
        line = line.strip()
        if line.startswith("{") and '"timings"' in line:
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def parse_json_line(stdout: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def tail(text: str, n: int = 20) -> str:
    lines = text.rstrip().splitlines()
    return "\n".join("    " + l for l in lines[-n:]) or "    (stderr was empty)"


GNU_TIME = "/usr/bin/time"


def gnu_time_ok() -> bool:
    """GNU time with -f/-o (Debian package `time`)."""
    if not os.access(GNU_TIME, os.X_OK):
        return False
    try:
        with tempfile.NamedTemporaryFile() as o:
            r = subprocess.run([GNU_TIME, "-f", "%M", "-o", o.name, "true"], capture_output=True, timeout=10)
            return r.returncode == 0 and o.read().strip().isdigit()
    except (OSError, subprocess.TimeoutExpired):
        return False


def run_once(cmds: list[list[str]], timeout: float, capture_stdout: bool = False,
             use_time: bool = False) -> dict:
    """Run a pipeline cmds[0] | cmds[1] | ..., last stdout to /dev/null (or captured).
    Returns wall seconds from the first start to the last exit, the max peak RSS
    over the processes, and summed user/sys CPU.

    Peak RSS: a child's ru_maxrss from os.wait4 can't be lower than this Python
    process's own high-water RSS (Linux carries the pre-exec mm's hiwater into the
    child's maxrss), so with use_time each command runs under GNU time, which
    forks from its own ~2 MB image and reports its child's ru_maxrss (%M)."""
    errs = [tempfile.TemporaryFile() for _ in cmds]   # files, so a chatty child can't block
    outf = tempfile.TemporaryFile() if capture_stdout else None
    tfiles = [tempfile.NamedTemporaryFile(prefix="bench-rss-") for _ in cmds] if use_time else []
    procs: list[subprocess.Popen] = []
    try:
        t0 = time.perf_counter()
        prev = subprocess.DEVNULL
        for i, cmd in enumerate(cmds):
            if use_time:
                cmd = [GNU_TIME, "-q", "-f", "%M", "-o", tfiles[i].name] + cmd
            last = i == len(cmds) - 1
            try:
                p = subprocess.Popen(cmd, stdin=prev,
                                     stdout=(outf or subprocess.DEVNULL) if last else subprocess.PIPE,
                                     stderr=errs[i], cwd=ROOT)
            except OSError as e:
                for q in procs:
                    q.kill()
                raise BenchError(f"could not start {cmd[0]}: {e}")
            if prev is not subprocess.DEVNULL:
                prev.close()             # only the reader holds the pipe now
            prev = p.stdout if not last else None
            procs.append(p)
        timed_out = threading.Event()

        def kill():
            timed_out.set()
            for q in procs:
                try:
                    os.kill(q.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        timer = threading.Timer(timeout, kill)
        timer.start()
        rus, codes = [], []
        try:
            for p in procs:
                _, status, ru = os.wait4(p.pid, 0)
                p.returncode = os.waitstatus_to_exitcode(status)
                rus.append(ru)
                codes.append(p.returncode)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - t0
        stderrs = []
        for e in errs:
            e.seek(0)
            stderrs.append(e.read().decode("utf-8", "replace"))
        stdout = ""
        if outf:
            outf.seek(0)
            stdout = outf.read().decode("utf-8", "replace")
        timed_rss = []
        for tf in tfiles:
            tf.seek(0)
            v = tf.read().decode().strip().splitlines()
            timed_rss.append(int(v[-1]) if v and v[-1].isdigit() else None)
    finally:
        for e in errs:
            e.close()
        for tf in tfiles:
            tf.close()
        if outf:
            outf.close()
    line = " | ".join(shlex.join(c) for c in cmds)
    if timed_out.is_set():
        raise BenchError(f"timed out after {timeout:g}s: {line}\n"
                         f"  last lines of stderr:\n{tail(''.join(stderrs))}")
    for cmd, rc, err in zip(cmds, codes, stderrs):
        if rc != 0:
            how = f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
            raise BenchError(f"command failed ({how}): {shlex.join(cmd)}\n"
                             f"  last lines of stderr:\n{tail(err)}")
    each = [t if t is not None else r.ru_maxrss for t, r in zip(timed_rss, rus)] if use_time \
        else [r.ru_maxrss for r in rus]
    return {"seconds": seconds, "peak_rss_kib": max(each),
            "peak_rss_kib_each": each if len(each) > 1 else None,
            "user_s": sum(r.ru_utime for r in rus), "sys_s": sum(r.ru_stime for r in rus),
            "_stderr": "".join(stderrs), "_stdout": stdout}


def tool_version(cmd: list[str], any_rc: bool = False, grep: str | None = None) -> str | None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0 and not any_rc:
        return None
    lines = [l.strip() for l in (r.stdout + "\n" + r.stderr).splitlines() if l.strip()]
    if grep:
        lines = [l for l in lines if grep in l]
    return lines[0] if lines else None


def py_has(py: str, module: str) -> str | None:
    """Version of module importable by py, or None."""
    try:
        r = subprocess.run([py, "-c", f"import {module}; print({module}.__version__)"],
                           capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() or "?" if r.returncode == 0 else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture", nargs="?", type=Path, default=DEFAULT_CAPTURE,
                    help="pcap to analyse (default: %(default)s)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool; best reported")
    ap.add_argument("--tools", default=",".join(DEFAULT_TOOLS),
                    help=f"comma-separated subset of {','.join(ALL_TOOLS)} (default: %(default)s)")
    ap.add_argument("--tcpfsm", metavar="CMD",
                    help="command used instead of the tcpfsm executable (shell-split; "
                         "'analyze FILE --format json -o /dev/null --timings' is appended)")
    ap.add_argument("--scapy-packets", type=int, default=100_000,
                    help="records of the capture given to scapy (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=3600, help="per run, seconds")
    ap.add_argument("--json", type=Path, default=DEFAULT_RESULTS,
                    help="results file (default: %(default)s)")
    args = ap.parse_args()

    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    bad = set(tools) - set(ALL_TOOLS)
    if bad or not tools or args.repeat < 1 or args.scapy_packets < 1:
        ap.error(f"bad --tools {args.tools!r}, --repeat {args.repeat} or --scapy-packets")
    tools = [t for t in ALL_TOOLS if t in tools]       # fixed order

    cap = args.capture.resolve()
    if not cap.exists():
        raise BenchError(f"{cap} does not exist; record it with: python3 bench/make_capture.py")

    t0 = time.perf_counter()
    packets = count_packets(cap, keep=False)     # chunked: keeps this process's RSS low
    size = cap.stat().st_size
    print(f"capture: {cap} ({packets:,} packets, {size / 1e6:.1f} MB; "
          f"counted in {time.perf_counter() - t0:.2f}s)")

    use_time = gnu_time_ok()
    rss_method = ("GNU time %M (ru_maxrss of the tool itself)" if use_time else
                  "os.wait4 ru_maxrss (floor: this harness's own peak RSS, "
                  f"~{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; "
                  "install GNU time for exact figures)")
    print(f"peak RSS via {rss_method}")
    py = find_python()
    cmds: dict[str, list[list[str]]] = {}
    inputs: dict[str, tuple[str, int]] = {}          # tool -> (file, packets)
    versions: dict[str, str | None] = {}
    skipped: dict[str, str] = {}
    for tool in tools:
        inputs[tool] = (str(cap), packets)
        if tool == "cat":
            cmds[tool] = [["cat", str(cap)]]
            versions[tool] = tool_version(["cat", "--version"])
        elif tool == "tcpfsm":
            base = shlex.split(args.tcpfsm) if args.tcpfsm else find_tcpfsm()
            if not base:
                raise BenchError("tcpfsm not found (neither .venv/bin/tcpfsm nor tcpfsm on PATH); "
                                 "run `make venv`, or pass --tcpfsm CMD")
            cmds[tool] = [base + ["analyze", str(cap), "--format", "json", "-o", "/dev/null",
                                  "--timings"]]
            versions[tool] = None if args.tcpfsm else tool_version(base + ["--version"])
        elif tool == "tshark":
            if not shutil.which("tshark"):
                skipped[tool] = "tshark not on PATH (apt-get install tshark)"
                continue
            cmds[tool] = [["tshark", "-r", str(cap), "-q", "-z", "conv,tcp"]]
            versions[tool] = tool_version(["tshark", "--version"])
        elif tool == "tcptrace":
            if not shutil.which("tcptrace"):
                skipped[tool] = "tcptrace not on PATH (apt-get install tcptrace)"
                continue
            cmds[tool] = [["tcptrace", "-n", str(cap)]]
            versions[tool] = tool_version(["tcptrace", "-v"], any_rc=True, grep="version")
        elif tool == "argus":
            missing = [t for t in ("argus", "ra") if not shutil.which(t)]
            if missing:
                skipped[tool] = (f"{' and '.join(missing)} not on PATH "
                                 f"(apt-get install argus-server argus-client)")
                continue
            cmds[tool] = [["argus", "-r", str(cap), "-w", "-"], ["ra", "-r", "-"]]
            versions[tool] = tool_version(["argus", "-h"], any_rc=True, grep="Version")
        elif tool in ("dpkt", "dpkt-tcpfsm"):
            v = py_has(py, "dpkt")
            if v is None:
                skipped[tool] = f"dpkt not importable by {py} (pip install dpkt)"
                continue
            if tool == "dpkt-tcpfsm" and py_has(py, "tcpfsm") is None:
                skipped[tool] = f"tcpfsm not importable by {py} (make venv)"
                continue
            cmds[tool] = [[py, str(HERE / "dpkt_loop.py"), str(cap)]
                          + (["--tcpfsm-decoder"] if tool == "dpkt-tcpfsm" else [])]
            versions[tool] = f"dpkt {v}"
        elif tool == "scapy":
            v = py_has(py, "scapy")
            if v is None:
                skipped[tool] = f"scapy not importable by {py} (pip install scapy)"
                continue
            sub = cap.with_name(f"{cap.stem}_{args.scapy_packets // 1000}k.pcap")
            n_sub = make_subset(cap, sub, args.scapy_packets)
            cmds[tool] = [[py, str(HERE / "scapy_loop.py"), str(sub)]]
            inputs[tool] = (str(sub), n_sub)
            versions[tool] = f"scapy {v}"
    for tool, why in skipped.items():
        print(f"  skipping {tool}: {why}")

    runs: dict[str, list[dict]] = {t: [] for t in cmds}
    failed: dict[str, str] = {}
    for i in range(args.repeat):
        for tool, cmd in cmds.items():           # interleaved, so drift hits every tool
            if tool in failed:
                continue
            line = " | ".join(shlex.join(c) for c in cmd)
            print(f"  run {i + 1}/{args.repeat} {tool}: {line}", flush=True)
            try:
                r = run_once(cmd, args.timeout, capture_stdout=tool in ("dpkt", "dpkt-tcpfsm", "scapy"),
                             use_time=use_time)
            except BenchError as e:
                if tool == "tcpfsm":
                    raise
                failed[tool] = str(e)
                print(f"    FAILED (reported, run continues): {e}", flush=True)
                continue
            stderr, stdout = r.pop("_stderr"), r.pop("_stdout")
            if tool == "tcpfsm":
                r["timings"] = parse_timings(stderr)
            elif stdout:
                r["report"] = parse_json_line(stdout)
            print(f"    {r['seconds']:.2f}s, {r['peak_rss_kib'] / 1024:.1f} MB peak RSS, "
                  f"{r['user_s'] + r['sys_s']:.2f}s CPU", flush=True)
            runs[tool].append(r)

    results: dict[str, dict] = {}
    for tool, rs in runs.items():
        if not rs:
            continue
        best = min(rs, key=lambda r: r["seconds"])
        n_in = inputs[tool][1]
        cpu = min(r["user_s"] + r["sys_s"] for r in rs)
        results[tool] = {
            "command": cmds[tool],
            "input": inputs[tool][0],
            "input_packets": n_in,
            "version": versions.get(tool),
            "seconds": round(best["seconds"], 4),
            "packets_per_s": round(n_in / best["seconds"], 1),
            "cpu_seconds": round(cpu, 4),
            "packets_per_cpu_s": round(n_in / cpu, 1) if cpu > 0 else None,
            "peak_rss_mb": round(min(r["peak_rss_kib"] for r in rs) / 1024, 1),
            "runs": [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}
                     for r in rs],
        }
    base_pps = results["tcpfsm"]["packets_per_s"] if "tcpfsm" in results else None
    base_cpu = results["tcpfsm"]["packets_per_cpu_s"] if "tcpfsm" in results else None
    for tool, r in results.items():
        r["ratio_to_tcpfsm"] = round(r["packets_per_s"] / base_pps, 4) if base_pps else None
        r["cpu_ratio_to_tcpfsm"] = (round(r["packets_per_cpu_s"] / base_cpu, 4)
                                    if r["packets_per_cpu_s"] and base_cpu else None)

    print()
    print(f"best of {args.repeat}; ratio = tool's packets/s / tcpfsm's packets/s "
          f"(< 1: tcpfsm is faster, > 1: the tool is faster)")
    hdr = (f"{'tool':<12} {'packets':>10} {'seconds':>9} {'packets/s':>11} {'peak RSS MB':>12} "
           f"{'ratio':>8} {'CPU s':>8} {'CPU ratio':>10}")
    print(hdr)
    print("-" * len(hdr))
    for tool, r in results.items():
        rr, cr = r["ratio_to_tcpfsm"], r["cpu_ratio_to_tcpfsm"]
        print(f"{tool:<12} {r['input_packets']:>10,} {r['seconds']:>9.2f} {r['packets_per_s']:>11,.0f} "
              f"{r['peak_rss_mb']:>12.1f} {(f'{rr:.3f}x' if rr is not None else '-'):>8} "
              f"{r['cpu_seconds']:>8.2f} {(f'{cr:.3f}x' if cr is not None else '-'):>10}")
    for tool, why in {**skipped, **{t: "failed" for t in failed}}.items():
        print(f"{tool:<12} skipped: {why}")
    if "scapy" in results:
        print(f"(scapy ran on the first {results['scapy']['input_packets']:,} records only)")

    best_t = min(runs["tcpfsm"], key=lambda r: r["seconds"]) if runs.get("tcpfsm") else {}
    stages = None
    if best_t.get("timings"):
        st = best_t["timings"]["timings"]
        wall = best_t["seconds"]
        order = ["read+decode", "track", "detect", "render"]
        stages = {k: st[k] for k in order if k in st}
        stages["total (in process)"] = st.get("total", sum(stages.values()))
        stages["startup+exit (wall - total)"] = round(wall - stages["total (in process)"], 4)
        print(f"\ntcpfsm stages (fastest run, --timings; wall {wall:.2f}s):")
        for k, v in stages.items():
            rate = f"{packets / v:>12,.0f} packets/s" if v > 0 and k in order else ""
            print(f"  {k:<28} {v:>8.2f}s {100 * v / wall:>5.1f} %  {rate}")
    elif best_t:
        print("\ntcpfsm printed no --timings line; no stage breakdown")
    if "cat" in results:
        c = results["cat"]
        print(f"page-cache read (cat FILE > /dev/null): {c['seconds']:.3f}s, "
              f"{c['packets_per_s']:,.0f} packets/s, {size / 1e6 / c['seconds']:,.0f} MB/s")

    doc = {
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "capture": str(cap),
        "file_bytes": size,
        "packets": packets,
        "repeat": args.repeat,
        "best_of": "fastest run for seconds and packets_per_s; lowest peak RSS; lowest CPU",
        "ratio": "ratio_to_tcpfsm = tool packets_per_s / tcpfsm packets_per_s (< 1: tcpfsm faster)",
        "tools": results,
        "tcpfsm_stages_s": stages,
        "peak_rss_method": rss_method,
        "skipped": skipped,
        "failed": failed,
        "ratio_packets_per_s_tcpfsm_over_tshark": (
            round(base_pps / results["tshark"]["packets_per_s"], 4)
            if base_pps and "tshark" in results else None),
        "load_average_at_end": list(os.getloadavg()),
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(),
                 "python": platform.python_version(), "machine": platform.machine()},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"results: {args.json}  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs: "
          f"shared machine, figures are noisy)")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        sys.exit(1)
