#!/usr/bin/env python3
"""Load figures: time and peak memory of tcpfsm, argus and tcptrace on the two generated load captures
(bench/make_load.py), in the same run, each under a guard.

    bench/load.py                                  # the sizes `make bench` uses: 200,000 SYNs, 20,000 conns
    bench/load.py --syns 2000000 --conns 200000    # the full-size figures (issue 12): a few minutes a tool

Runs, per capture (flood = spoofed SYN flood, open = connections that never close):
    tcpfsm         tcpfsm analyze FILE --format json -o bench/out/load_out.json -q --timings
    tcpfsm-stream  the same with --stream --max-tracked 100000
    argus          argus -r FILE -w - | ra -r -        (stdout to /dev/null)
    tcptrace       tcptrace -n FILE                    (stdout to /dev/null)

Each run is under GNU time (-f %M: the peak RSS of the largest process, %e: wall seconds) and a watchdog
that samples the summed RSS of every process of the run (its own session) five times a second: over
--max-rss (default 8 GiB) or --max-seconds (default 600) the run is killed and the table says
"guard: memory" / "guard: time" with the figures reached -- a result, not a crash, so that an engine
with unbounded memory cannot take the machine down. Results: a table on stdout, JSON in
bench/out/load_results.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import make_load  # noqa: E402

GNU_TIME = "/usr/bin/time"
PAGE = os.sysconf("SC_PAGE_SIZE")
TOOLS = ["tcpfsm", "tcpfsm-stream", "argus", "tcptrace"]


def session_rss(sid: int) -> tuple[int, list[int]]:
    """Summed RSS (bytes) of the processes in session `sid`, and their pids."""
    total, pids = 0, []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rfind(b")") + 2:].split()
        if int(fields[3]) == sid:                 # field 6 of stat: the session id
            pids.append(int(d))
            total += int(fields[21]) * PAGE       # field 24: rss in pages
    return total, pids


def guarded(shell: str, max_rss: int, max_seconds: float, stdout=subprocess.DEVNULL) -> dict:
    """Run `shell` (bash -c) under GNU time and the watchdog. Returns seconds, peak RSS (GNU time's and the
    sampled sum over the run's processes), exit status, stderr and which guard fired (or None)."""
    with tempfile.NamedTemporaryFile(prefix="load-time-") as tf, tempfile.TemporaryFile() as err:
        cmd = [GNU_TIME, "-q", "-f", "%M %e", "-o", tf.name, "bash", "-c", shell]
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=stdout, stderr=err, stdin=subprocess.DEVNULL, cwd=ROOT,
                             start_new_session=True)
        guard, peak_sum = None, 0
        while p.poll() is None:
            rss, pids = session_rss(p.pid)
            peak_sum = max(peak_sum, rss)
            over = "memory" if rss > max_rss else "time" if time.perf_counter() - t0 > max_seconds else None
            if over and guard is None:
                guard = over
                for pid in pids:                  # the tool's processes; GNU time itself stays to report
                    if pid != p.pid:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
            try:
                p.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        seconds = time.perf_counter() - t0
        tf.seek(0)
        parts = tf.read().decode().split()
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    peak_kib = int(parts[-2]) if len(parts) >= 2 and parts[-2].isdigit() else None
    if guard:       # a killed run: GNU time's figure can miss the killed process; the samples did not
        peak_kib = max(peak_kib or 0, peak_sum >> 10)
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(peak_kib / 1024, 1) if peak_kib else None,
            "peak_rss_sum_mb": round(peak_sum / 2**20, 1), "exit": p.returncode, "guard": guard,
            "stderr": stderr[-2000:]}


def tcpfsm_cmd() -> str:
    exe = Path(sys.executable).parent / "tcpfsm"
    return shlex.quote(str(exe)) if exe.exists() else shlex.join([sys.executable, "-m", "tcpfsm.cli"])


def commands(tool: str, cap: Path, out: Path) -> str | None:
    c = shlex.quote(str(cap))
    if tool == "tcpfsm":
        return f"{tcpfsm_cmd()} analyze {c} --format json -o {shlex.quote(str(out))} -q --timings"
    if tool == "tcpfsm-stream":
        return (f"{tcpfsm_cmd()} analyze {c} --format json -o {shlex.quote(str(out))} -q --timings "
                f"--stream --max-tracked 100000")
    if tool == "argus":
        if not (shutil.which("argus") and shutil.which("ra")):
            return None
        return f"argus -r {c} -w - | ra -r - > /dev/null"
    if tool == "tcptrace":
        if not shutil.which("tcptrace"):
            return None
        return f"tcptrace -n {c} > /dev/null"
    raise ValueError(tool)


def timings_line(stderr: str) -> dict | None:
    for line in reversed(stderr.splitlines()):
        if line.startswith('{"timings"'):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


_AGGREGATE = b'\n "anomalies": ['        # the document's findings (flow records are one line each)


def finding_kinds(path: Path) -> dict[str, list[int]]:
    """The document's findings by kind -> [records, sum of their counts], read from its `anomalies` list
    (after the flows: the output of a flood can be gigabytes, scanned in chunks for where the list starts).
    Per-flow findings inside flow records are not counted: a streamed run writes a flow when it leaves the
    table, with the findings known then; the aggregate findings are the ones to compare."""
    with open(path, "rb") as f:
        pos, carry = 0, b""
        while True:
            chunk = f.read(16 << 20)
            if not chunk:
                return {}
            data = carry + chunk
            k = data.find(_AGGREGATE)
            if k >= 0:
                f.seek(pos - len(carry) + k + len(_AGGREGATE) - 1)
                break
            pos += len(chunk)
            carry = data[-len(_AGGREGATE):]
        found, _ = json.JSONDecoder().raw_decode(f.read().decode())
    counts: dict[str, list[int]] = {}
    for a in found:
        c = counts.setdefault(a["kind"], [0, 0])
        c[0] += 1
        c[1] += int(a.get("count") or 1)
    return dict(sorted(counts.items(), key=lambda kv: -kv[1][1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--syns", type=int, default=200_000, help="SYNs in the flood capture (full size: 2000000)")
    ap.add_argument("--conns", type=int, default=20_000, help="never-closing connections (full size: 200000)")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated subset of {','.join(TOOLS)}")
    ap.add_argument("--captures", default="flood,open", help="flood, open or both")
    ap.add_argument("--max-rss", type=float, default=8.0, help="GiB: a run above it is killed (guard)")
    ap.add_argument("--max-seconds", type=float, default=600, help="a run longer is killed (guard)")
    ap.add_argument("--json", type=Path, default=HERE / "out" / "load_results.json")
    args = ap.parse_args()
    if not os.access(GNU_TIME, os.X_OK):
        print("load: /usr/bin/time is missing (apt-get install time)", file=sys.stderr)
        return 2
    tools = [t for t in args.tools.split(",") if t]
    bad = [t for t in tools if t not in TOOLS]
    if bad:
        ap.error(f"unknown tool {bad[0]!r}")
    caps = []
    for kind in args.captures.split(","):
        if kind == "flood" and args.syns:
            caps.append(("flood", args.syns, make_load.build("flood", args.syns)))
        elif kind == "open" and args.conns:
            caps.append(("open", args.conns, make_load.build("open", args.conns)))
    out = HERE / "out" / "load_out.json"
    results = []
    print(f"{'capture':<22} {'tool':<14} {'seconds':>8} {'peak RSS':>10} {'sum RSS':>10}  result")
    for kind, n, cap in caps:
        label = f"{kind} {n:,}"
        for tool in tools:
            shell = commands(tool, cap, out)
            if shell is None:
                print(f"{label:<22} {tool:<14} {'':>8} {'':>10} {'':>10}  skipped: not installed")
                continue
            r = guarded(shell, int(args.max_rss * 2**30), args.max_seconds)
            r.update(capture=str(cap.relative_to(ROOT)), kind=kind, count=n, size_mb=round(cap.stat().st_size / 1e6, 1),
                     tool=tool, command=shell)
            if tool.startswith("tcpfsm"):
                t = timings_line(r["stderr"])
                if t:
                    r["flows"] = t.get("flows")
                    r["stages"] = t.get("timings")
                if out.exists():
                    r["output_mb"] = round(out.stat().st_size / 1e6, 1)
                    if r["exit"] == 0:
                        r["findings"] = finding_kinds(out)
                    out.unlink()
            if r["guard"]:
                res = (f"guard: {r['guard']} (over {args.max_rss:g} GiB)" if r["guard"] == "memory"
                       else f"guard: time (over {args.max_seconds:g} s)")
            elif r["exit"] != 0:
                res = f"failed, exit {r['exit']}: {r['stderr'].strip().splitlines()[-1][:80] if r['stderr'].strip() else ''}"
            else:
                res = "ok" + (f", {r['flows']:,} flows" if r.get("flows") is not None else "") + \
                      (f", {r['output_mb']:,} MB JSON" if r.get("output_mb") else "")
            r["result"] = res
            rss = f"{r['peak_rss_mb']:,.0f} MB" if r["peak_rss_mb"] else "?"
            print(f"{label:<22} {tool:<14} {r['seconds']:>8.1f} {rss:>10} {r['peak_rss_sum_mb']:>7,.0f} MB  {res}",
                  flush=True)
            if r.get("findings"):
                print(f"{'':<38}findings (records, count): " +
                      ", ".join(f"{k} {n:,} ({c:,})" for k, (n, c) in r["findings"].items()))
            r.pop("stderr") if r["exit"] == 0 else None
            results.append(r)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                     "load_average": os.getloadavg(), "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
