#!/usr/bin/env python3
"""Live-mode soak (root): `tcpfsm live` for `--minutes` (default 10) at a packet rate it keeps up with, under
continuous connection churn, sampling the live process's RSS every 10 s, to show what memory does when
finished connections are evicted and some are never closed.

Same namespaces and frame generator as bench/live_burst.py (its helpers are reused), building frames on the
fly: `--concurrent` connections interleaved, each `7 + 2 x rounds` packets, a new 4-tuple as each one ends;
`--open-frac` of them are left open (no FIN, never evicted: they accumulate, as on a real host with
idle keep-alive connections). The rate is fixed (`--rate`, packets/s; pick ~70 % of the sweep's drop-free,
no-backlog maximum). Prints the samples and writes bench/out/live_soak.json: RSS at 1, 5 and 10 minutes (and
first / max), connections tracked, evicted by reason, packets offered / seen, drops, latency.

    python3 bench/live_soak.py [--minutes 10] [--backend tcpdump] [--rate 20000]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import live_burst as lb  # noqa: E402


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--backend", default="tcpdump")
    ap.add_argument("--rate", type=float, default=20000.0, help="packets per second offered")
    ap.add_argument("--concurrent", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--payload", type=int, default=64)
    ap.add_argument("--open-frac", type=float, default=0.05, help="share of connections left open")
    ap.add_argument("--every", type=float, default=10.0, help="seconds between RSS samples")
    ap.add_argument("--live-args", default="--snaplen 256")
    ap.add_argument("--out", default=os.path.join(lb.ROOT, "bench", "out", "live_soak.json"))
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("live_soak.py needs root")
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: (lb.cleanup(), sys.exit(1)))
    secs = a.minutes * 60
    samples = []
    g = final = None
    try:
        lb.setup()
        gen = lb.start_gen(a.rate, secs, a, prebuild=False, seed=7)
        live = lb.Live(a.backend, a.every, a.live_args.split())
        assert live.ready.wait(30), "capture did not start"
        time.sleep(0.5)
        pid = live.proc.pid                  # `ip netns exec` execs: this is the tcpfsm process
        l0 = lb.link_stats(lb.NSS, lb.IFS)
        t0 = time.time()
        gen.stdin.write("go\n")
        gen.stdin.flush()
        n = 0
        while time.time() - t0 < secs + 1 and live.proc.poll() is None and n < secs / a.every + 10:
            s = live.last()
            lat = s.get("latency_ms") or {}
            samples.append({"t": round(time.time() - t0), "rss_mb": round(rss_kb(pid) / 1024, 1),
                            "packets": s.get("packets"), "pps": s.get("pps"), "flows_tracked": s.get("flows_tracked"),
                            "flows_total": s.get("flows_total"), "evicted": sum((s.get("evicted") or {}).values()),
                            "dropped": (s.get("drops") or {}).get("dropped"), "p99_ms": lat.get("p99"),
                            "loadavg_1m": float(open("/proc/loadavg").read().split()[0])})
            print(json.dumps(samples[-1]), flush=True)
            n += 1
            time.sleep(max(0.0, t0 + n * a.every - time.time()))
        g = json.loads(gen.stdout.readline() or "{}")
        gen.wait(timeout=30)
        l1 = lb.link_stats(lb.NSS, lb.IFS)
        time.sleep(2.0)
        rss_end = round(rss_kb(pid) / 1024, 1)
        final = live.stop(timeout=180)
    finally:
        lb.cleanup()

    def at(sec):
        c = [s for s in samples if s["t"] >= sec - 1]
        return c[0]["rss_mb"] if c else None
    rss = [s["rss_mb"] for s in samples]
    d = final.get("drops", {})
    res = {"minutes": a.minutes, "backend": a.backend, "rate": a.rate, "live_args": a.live_args,
           "concurrent": a.concurrent, "packets_per_conn": 7 + 2 * a.rounds, "open_frac": a.open_frac,
           "offered": g, "veth_tx_dropped": l1.get("tx_dropped", 0) - l0.get("tx_dropped", 0),
           "rss_mb": {"start": rss[0], "1min": at(60), "5min": at(300), "10min": at(600), "max": max(rss),
                      "before_stop": rss_end},
           "packets_seen": final.get("packets"), "dropped": d.get("dropped"), "received": d.get("received"),
           "unread_at_stop": d.get("unread_at_stop", 0), "flows_total": final.get("flows_total"),
           "flows_tracked_last_sample": samples[-1]["flows_tracked"], "flows_tracked_at_stop": final.get("flows_tracked"),
           "evicted": final.get("evicted"), "latency_ms": final.get("latency_ms"),
           "worst_sample_p99_ms": max((s["p99_ms"] or 0) for s in samples), "events": dict(live.counts),
           "rc": live.proc.returncode, "samples": samples}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as fh:
        json.dump(res, fh, indent=2)
    print(json.dumps({k: v for k, v in res.items() if k != "samples"}))


if __name__ == "__main__":
    main()
