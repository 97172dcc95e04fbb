#!/usr/bin/env python3
"""Live-mode burst benchmark (root): how many packets/s each backend follows, what it drops, and how long
from a packet to its event.

Two network namespaces joined by a veth pair (`tfb-c<PID>` / `tfb-s<PID>`); an echo server in one, in the
other `--procs` client processes each keeping `--conns` TCP_NODELAY connections in pipelined 1-byte
ping-pong (two packets per round trip) plus one process opening and closing connections continuously (the
transitions whose latency is measured). `tcpfsm live -i <veth> --format jsonl` runs in the client
namespace for each backend. Bounded: `--seconds` of traffic (default 12) and at most `--max-msgs` round trips
per client process. Everything created is removed (by PID / exact name) on exit.

    python3 bench/live_burst.py [--backends tcpdump,afpacket] [--seconds 12]

Prints per backend: packets seen, packets/s over the burst, the backend's received/dropped counters, and
the packet -> event latency (p50/p90/p99/max, ms) of the transitions emitted.
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
PID = os.getpid()
NSC, NSS = f"tfb-c{PID}", f"tfb-s{PID}"
IFC, IFS = f"tbc{PID}"[:15], f"tbs{PID}"[:15]
CIP, SIP = "10.78.0.1", "10.78.0.2"

SERVER = r"""
import selectors, socket, sys
sel = selectors.DefaultSelector()
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], 9000)); l.listen(4096); l.setblocking(False)
sel.register(l, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select(1.0):
        s = key.fileobj
        if s is l:
            try:
                c, _ = l.accept()
            except OSError:
                continue
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1); c.setblocking(False)
            sel.register(c, selectors.EVENT_READ)
            continue
        try:
            d = s.recv(65536)
        except OSError:
            d = b""
        if not d:
            sel.unregister(s); s.close(); continue
        try:
            s.send(d)
        except OSError:
            pass
"""

PINGPONG = r"""
import socket, sys, time
sip, n, secs, maxm = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
cs = []
for _ in range(n):
    s = socket.create_connection((sip, 9000)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cs.append(s)
end = time.time() + secs
msgs = 0
while time.time() < end and msgs < maxm:
    for s in cs:
        s.send(b"x")
    for s in cs:
        s.recv(16)
    msgs += n
for s in cs:
    s.close()
print(msgs, flush=True)
"""

CHURN = r"""
import socket, sys, time
sip, secs = sys.argv[1], float(sys.argv[2])
end = time.time() + secs
k = 0
while time.time() < end and k < 200000:
    s = socket.create_connection((sip, 9000)); s.send(b"hello"); s.recv(16); s.close(); k += 1
    time.sleep(0.002)
print(k, flush=True)
"""


def sh(*cmd, check=True):
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


procs: list[subprocess.Popen] = []


def popen(ns, args, **kw):
    p = subprocess.Popen(["ip", "netns", "exec", ns, *args], env=ENV, **kw)
    procs.append(p)
    return p


def setup():
    sh("ip", "netns", "add", NSC)
    sh("ip", "netns", "add", NSS)
    sh("ip", "link", "add", IFC, "netns", NSC, "type", "veth", "peer", "name", IFS, "netns", NSS)
    for ns, dev, ip in ((NSC, IFC, CIP), (NSS, IFS, SIP)):
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")


def cleanup():
    for p in procs:
        if p.poll() is None:
            p.kill()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    for ns in (NSC, NSS):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def run_backend(backend: str, a) -> dict:
    cmd = [sys.executable, "-m", "tcpfsm.cli", "live", "-i", IFC, "--backend", backend, "-f", "tcp port 9000",
           "--format", "jsonl", "--stats-interval", "1", "--snaplen", "128", "--buffer", str(a.buffer)]
    live = popen(NSC, cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stats: list[tuple[float, dict]] = []
    counts = {"transition": 0, "anomaly": 0, "flow_end": 0}
    ready = threading.Event()

    def reader():
        for line in live.stdout:
            e = json.loads(line)
            if e["event"] == "stats":
                stats.append((time.time(), e))
                ready.set()
            else:
                counts[e["event"]] = counts.get(e["event"], 0) + 1

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    if not ready.wait(30):
        raise SystemExit(f"{backend}: capture did not start: {live.stderr.read() if live.poll() is not None else ''}")
    t0 = time.time()
    gens = [popen(NSC, [sys.executable, "-c", PINGPONG, SIP, str(a.conns), str(a.seconds), str(a.max_msgs)],
                  stdout=subprocess.PIPE, text=True) for _ in range(a.procs)]
    gens.append(popen(NSC, [sys.executable, "-c", CHURN, SIP, str(a.seconds)], stdout=subprocess.PIPE, text=True))
    for g in gens:
        g.wait(timeout=a.seconds + 60)
    t1 = time.time()
    time.sleep(2.0)                                  # let the backlog drain
    live.send_signal(signal.SIGTERM)
    live.wait(timeout=60)
    th.join(timeout=10)
    final = stats[-1][1]
    # packets/s while the traffic ran: from the stats events inside [t0, t1]
    inside = [(t, e) for t, e in stats if t0 <= t <= t1 + 0.5]
    peak = 0.0
    for (ta, ea), (tb, eb) in zip(inside, inside[1:]):
        if tb > ta:
            peak = max(peak, (eb["packets"] - ea["packets"]) / (tb - ta))
    d = final["drops"]
    offered = (d["received"] or 0)
    return {"backend": backend, "seconds": round(t1 - t0, 2), "packets_seen": final["packets"],
            "pps_avg": round(final["packets"] / (t1 - t0)), "pps_peak_1s": round(peak),
            "kernel_received": offered, "dropped": d["dropped"], "drop_source": d["source"],
            "events": counts, "flows_total": final["flows_total"], "latency_ms": final["latency_ms"],
            "rc": live.returncode}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="tcpdump,afpacket")
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--max-msgs", type=int, default=3_000_000)
    ap.add_argument("--buffer", type=int, default=256, help="capture buffer, MiB")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "live_burst.json"))
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("live_burst.py needs root (network namespaces, capture)")
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: (cleanup(), sys.exit(1)))
    results = []
    try:
        setup()
        srv = popen(NSS, [sys.executable, "-c", SERVER, SIP], stdout=subprocess.PIPE, text=True)
        assert srv.stdout.readline().strip() == "ready"
        for b in a.backends.split(","):
            r = run_backend(b.strip(), a)
            results.append(r)
            print(json.dumps(r), flush=True)
    finally:
        cleanup()
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as fh:
        json.dump(results, fh, indent=2)
    print(f"{'backend':10} {'secs':>5} {'seen':>10} {'pkt/s avg':>10} {'peak 1s':>9} {'kernel rcv':>11} "
          f"{'dropped':>9}  latency ms p50/p99/max")
    for r in results:
        lat = r["latency_ms"]
        print(f"{r['backend']:10} {r['seconds']:5.1f} {r['packets_seen']:10} {r['pps_avg']:10} {r['pps_peak_1s']:9} "
              f"{r['kernel_received']:11} {r['dropped']:9}  {lat.get('p50')}/{lat.get('p99')}/{lat.get('max')}")


if __name__ == "__main__":
    main()
