#!/usr/bin/env python3
"""Live-mode soak (root): `tcpfsm live` for `--minutes` (default 10) under steady connection churn, sampling
the live process's RSS every 10 s, to show memory stays flat (finished connections are evicted and
forgotten; the table is capped).

Same namespace setup as bench/live_burst.py (its helpers are reused): an echo server, one process opening
and closing connections continuously (bounded: at most --rate per second), plus persistent ping-pong
connections. Prints the RSS samples and the first / last / max, writes bench/out/live_soak.json.

    python3 bench/live_soak.py [--minutes 10] [--backend tcpdump]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import live_burst as lb  # noqa: E402

CHURN = r"""
import socket, sys, time
sip, secs, rate = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
end = time.time() + secs
k = 0
while time.time() < end:
    t = time.time()
    s = socket.create_connection((sip, 9000)); s.send(b"hello"); s.recv(16); s.close(); k += 1
    time.sleep(max(0.0, 1.0 / rate - (time.time() - t)))
print(k, flush=True)
"""


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--backend", default="tcpdump")
    ap.add_argument("--rate", type=float, default=300.0, help="new connections per second")
    ap.add_argument("--out", default=os.path.join(lb.ROOT, "bench", "out", "live_soak.json"))
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("live_soak.py needs root")
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: (lb.cleanup(), sys.exit(1)))
    secs = a.minutes * 60
    samples = []
    try:
        lb.setup()
        srv = lb.popen(lb.NSS, [sys.executable, "-c", lb.SERVER, lb.SIP], stdout=subprocess.PIPE, text=True)
        assert srv.stdout.readline().strip() == "ready"
        live = lb.popen(lb.NSC, [sys.executable, "-m", "tcpfsm.cli", "live", "-i", lb.IFC, "--backend", a.backend,
                                 "-f", "tcp port 9000", "--format", "jsonl", "--stats-interval", "10"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stats = []
        ready = threading.Event()

        def reader():
            for line in live.stdout:
                e = json.loads(line)
                if e["event"] == "stats":
                    stats.append(e)
                    ready.set()
        threading.Thread(target=reader, daemon=True).start()
        assert ready.wait(30), "capture did not start"
        gens = [lb.popen(lb.NSC, [sys.executable, "-c", CHURN, lb.SIP, str(secs), str(a.rate)],
                         stdout=subprocess.PIPE, text=True),
                lb.popen(lb.NSC, [sys.executable, "-c", lb.PINGPONG, lb.SIP, "8", str(secs), "100000000"],
                         stdout=subprocess.PIPE, text=True)]
        t0 = time.time()
        while time.time() - t0 < secs + 1 and live.poll() is None:
            s = stats[-1] if stats else {}
            samples.append({"t": round(time.time() - t0), "rss_mb": round(rss_kb(live.pid) / 1024, 1),
                            "packets": s.get("packets"), "flows_tracked": s.get("flows_tracked"),
                            "flows_total": s.get("flows_total"), "dropped": (s.get("drops") or {}).get("dropped")})
            print(json.dumps(samples[-1]), flush=True)
            time.sleep(10)
        for g in gens:
            g.wait(timeout=60)
        live.send_signal(signal.SIGTERM)
        live.wait(timeout=120)
        time.sleep(0.5)
        final = stats[-1]
    finally:
        lb.cleanup()
    rss = [s["rss_mb"] for s in samples]
    res = {"minutes": a.minutes, "backend": a.backend, "samples": samples,
           "rss_first_mb": rss[1] if len(rss) > 1 else rss[0], "rss_last_mb": rss[-1], "rss_max_mb": max(rss),
           "packets": final["packets"], "flows_total": final["flows_total"], "dropped": final["drops"]["dropped"],
           "evicted": final["evicted"]}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as fh:
        json.dump(res, fh, indent=2)
    print(json.dumps({k: v for k, v in res.items() if k != "samples"}))


if __name__ == "__main__":
    main()
