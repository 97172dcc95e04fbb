#!/usr/bin/env python3
"""Live-mode rate sweep (root): for each backend and each offered rate, how many packets/s `tcpfsm live`
follows, what the capture drops, and how long from a packet to its event.

Traffic: two network namespaces joined by a veth pair (`tfb-c<PID>` / `tfb-s<PID>`, interfaces
`tbc<PID>` / `tbs<PID>`). A generator in the server namespace writes pre-crafted Ethernet/IPv4/TCP frames
on `tbs<PID>` with one raw AF_PACKET socket (`socket.send`, one syscall per frame, no TCP stack on either
side); `tcpfsm live -i tbc<PID>` captures them as they arrive on the other end. The frames carry a
destination MAC that is not the capturing interface's, so its IP stack discards them (PACKET_OTHERHOST) and
answers nothing: what is captured is exactly what was sent, and nothing leaves the two namespaces.

The frames are complete, checksum-valid TCP connections (both directions, client 10.80.x.y:port ->
10.78.0.2:9000): SYN, SYN/ACK, ACK, `--rounds` request/response rounds of `--payload`-byte segments,
FIN/ACK, ACK, FIN/ACK, ACK (`4 + 2 x rounds + 3` packets), `--concurrent` connections interleaved round
robin, each finished one replaced by a new 4-tuple (never reused). `--open-frac` of them are left open
(no close) for churn tests. `--rate PPS` paces the sender (the schedule is `rate x elapsed`, checked
every 256 frames, a short sleep when ahead), bounded by `--seconds` and by `rate x seconds` frames. For the
sweep the frames are built before the timed window (the sender then only calls `send`); the soak builds
them on the fly (`--onthefly`).

For each run: offered pps (frames sent / send time, and veth TX drops, which would be lost before any
capture), packets seen by tcpfsm and the rate it followed during the window, the backend's drop counter,
how long after the traffic stopped the last packets were analysed (the backlog), and the packet -> event
latency p50/p99 of the transitions (the engine keeps the last 20,000 samples: the final record covers the
end of the run, so the worst per-second p99 reported during the run is printed as well).

    python3 bench/live_burst.py --sweep tcpdump:20000,40000,60000,80000 --sweep scapy:5000,10000,20000
    python3 bench/live_burst.py --backends tcpdump,afpacket --rates 50000 --seconds 12

Bounded: every loop has a count and a time limit; everything created (processes by PID, the two
namespaces by exact name) is removed on exit.
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

# The frame generator, run in the server namespace. argv: iface rate seconds concurrent rounds payload
# open_frac prebuild(0/1) seed. Prints "ready" (after building), waits for "go" on stdin, sends, prints a JSON
# summary.
GEN = r"""
import json, os, random, socket, struct, sys, time
iface, rate, secs = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
conc, rounds, plen, open_frac = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
prebuild, seed = sys.argv[8] == "1", int(sys.argv[9])
total = int(rate * secs)
rnd = random.Random(seed)
ETH = bytes.fromhex("020000000099") + bytes.fromhex("020000000001") + b"\x08\x00"   # dst is nobody's MAC
SIP = (10 << 24) | (78 << 16) | 2
PAY = bytes((i * 7 + 65) & 0x7F for i in range(plen))
PAY_SUM = sum(struct.unpack("!%dH" % (plen // 2), PAY[:plen & ~1])) + ((PAY[-1] << 8) if plen & 1 else 0)
HDR = struct.Struct("!BBHHHBBHIIHHIIBBHHH")
SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01

def fold(x):
    while x >> 16:
        x = (x & 0xFFFF) + (x >> 16)
    return x

def frame(src, dst, sp, dp, seq, ack, flags, data):
    n = len(data)
    tot = 40 + n
    ipc = 0xFFFF - fold(0x4500 + tot + 0x4000 + 0x4006 + (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF))
    s = ((src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + 6 + 20 + n + sp + dp + (seq >> 16)
         + (seq & 0xFFFF) + (ack >> 16) + (ack & 0xFFFF) + (0x5000 | flags) + 0xFFFF + (PAY_SUM if n else 0))
    tc = 0xFFFF - fold(s)
    return ETH + HDR.pack(0x45, 0, tot, 0, 0x4000, 64, 6, ipc, src, dst, sp, dp, seq, ack, 0x50, flags, 0xFFFF,
                          tc, 0) + data

def conn_frames(k):
    cip = (10 << 24) | (80 << 16) | (k // 50000 + 1)      # 10.80.0.1, 10.80.0.2, ... 50,000 ports each
    cp = 10000 + k % 50000
    a, b = rnd.getrandbits(32), rnd.getrandbits(32)
    m = lambda x: x & 0xFFFFFFFF
    c = lambda seq, ack, fl, d=b"": frame(cip, SIP, cp, 9000, m(seq), m(ack), fl, d)
    s = lambda seq, ack, fl, d=b"": frame(SIP, cip, 9000, cp, m(seq), m(ack), fl, d)
    yield c(a, 0, SYN)
    yield s(b, a + 1, SYN | ACK)
    yield c(a + 1, b + 1, ACK)
    for r in range(rounds):
        yield c(a + 1 + r * plen, b + 1 + r * plen, PSH | ACK, PAY)
        yield s(b + 1 + r * plen, a + 1 + (r + 1) * plen, PSH | ACK, PAY)
    if rnd.random() < open_frac:
        stats["left_open"] += 1
        return
    e, f = a + 1 + rounds * plen, b + 1 + rounds * plen
    yield c(e, f, FIN | ACK)
    yield s(f, e + 1, ACK)
    yield s(f, e + 1, FIN | ACK)
    yield c(e + 1, f + 1, ACK)
    stats["closed"] += 1

stats = {"started": 0, "closed": 0, "left_open": 0}

def frames():
    active = []
    k = 0
    i = 0
    while True:
        while len(active) < conc:
            active.append(conn_frames(k)); k += 1; stats["started"] += 1
        i = i % len(active)
        try:
            yield next(active[i])
            i += 1
        except StopIteration:
            active[i] = conn_frames(k); k += 1; stats["started"] += 1

sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind((iface, 0))
sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
it = frames()
pre = [next(it) for _ in range(total)] if prebuild else None
print("ready", flush=True)
if sys.stdin.readline().strip() != "go":
    sys.exit(0)
send = sock.send
sent = errs = 0
t0 = time.monotonic()
deadline = t0 + secs + 5            # hard stop even when the sender falls behind the schedule
cpu0 = time.process_time()
while sent < total:
    now = time.monotonic()
    if now > deadline:
        break
    due = min(total, int(rate * (now - t0)) + 1)
    if due <= sent:
        time.sleep(min(0.002, (sent + 1 - rate * (now - t0)) / rate))
        continue
    stop = min(due, sent + 256)
    while sent < stop:
        f = pre[sent] if pre is not None else next(it)
        try:
            send(f)
        except OSError:
            errs += 1
        sent += 1
t1 = time.monotonic()
print(json.dumps({"sent": sent, "send_errors": errs, "seconds": round(t1 - t0, 3),
                  "pps": round(sent / (t1 - t0)), "cpu_s": round(time.process_time() - cpu0, 2), **stats}), flush=True)
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
    for ns in (NSC, NSS):                        # belt and braces: nothing of ours is routed anywhere
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=0", check=False)


def cleanup():
    for p in procs:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    for ns in (NSC, NSS):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def link_stats(ns: str, dev: str) -> dict:
    out = sh("ip", "-n", ns, "-j", "-s", "link", "show", dev, check=False).stdout
    try:
        s = json.loads(out)[0]["stats64"]
        return {"tx_packets": s["tx"]["packets"], "tx_dropped": s["tx"]["dropped"],
                "rx_packets": s["rx"]["packets"], "rx_dropped": s["rx"]["dropped"]}
    except (ValueError, KeyError, IndexError):
        return {}


class Live:
    """`tcpfsm live --format jsonl` in the client namespace; events counted cheaply (only stats are parsed)."""

    def __init__(self, backend: str, stats_interval: float, extra=()):
        cmd = [sys.executable, "-m", "tcpfsm.cli", "live", "-i", IFC, "--backend", backend, "-f", "tcp port 9000",
               "--format", "jsonl", "--stats-interval", str(stats_interval), *extra]
        self.proc = popen(NSC, cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stats: list[tuple[float, dict]] = []
        self.counts = {"transition": 0, "anomaly": 0, "flow_end": 0}
        self.ready = threading.Event()
        self.th = threading.Thread(target=self._read, daemon=True)
        self.th.start()

    _KINDS = {k: b'{"event":"' + k.encode() + b'"' for k in ("transition", "anomaly", "flow_end")}
    _STATS = b'{"event":"stats"'

    def _read(self):
        """Counts the events of each kind in whole chunks (bytes.count: at 100 k packets/s a Python step per
        line would take a good part of a core from the two being measured); only stats lines are parsed."""
        counts, fd, rest = self.counts, self.proc.stdout.fileno(), b""
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            data = rest + chunk
            cut = data.rfind(b"\n") + 1
            block, rest = data[:cut], data[cut:]
            for k, pat in self._KINDS.items():
                counts[k] += block.count(pat)
            i = block.find(self._STATS)
            while i >= 0:
                e = block.find(b"\n", i)
                self.stats.append((time.time(), json.loads(block[i:e])))
                self.ready.set()
                i = block.find(self._STATS, e)

    def last(self) -> dict:
        return self.stats[-1][1] if self.stats else {}

    def stop(self, timeout=60) -> dict:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.th.join(timeout=10)
        try:
            self.stderr = self.proc.stderr.read()[-2000:].decode(errors="replace")
        except (OSError, ValueError):
            self.stderr = ""
        return self.last()


def start_gen(rate, seconds, a, prebuild=True, seed=1):
    g = popen(NSS, [sys.executable, "-c", GEN, IFS, str(rate), str(seconds), str(a.concurrent), str(a.rounds),
                    str(a.payload), str(a.open_frac), "1" if prebuild else "0", str(seed)],
              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = g.stdout.readline().strip()
    if line != "ready":
        raise SystemExit(f"generator failed to start: {line!r}")
    return g


TICK = os.sysconf("SC_CLK_TCK")


def host_busy() -> float:
    """CPU seconds spent not idle by the whole machine so far (every process, ours and others', and the kernel)."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / TICK          # all but idle and iowait (guest time is in user)


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (the live process and its tcpdump)."""
    total, todo = 0.0, [pid]
    for _ in range(64):                                # bounded: a few processes at most
        if not todo:
            break
        p = todo.pop()
        try:
            with open(f"/proc/{p}/stat") as fh:
                f = fh.read().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / TICK
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except (OSError, ValueError, IndexError):
            pass
    return total


def run_one(backend: str, rate: int, a, seed: int) -> dict:
    gen = start_gen(rate, a.seconds, a, prebuild=True, seed=seed)
    live = Live(backend, 1.0, a.live_args.split())
    if not live.ready.wait(30):
        err = live.proc.stderr.read().decode(errors="replace") if live.proc.poll() is not None else ""
        raise SystemExit(f"{backend}: capture did not start: {err}")
    time.sleep(0.5)
    l0 = link_stats(NSS, IFS)
    t0 = time.time()
    h0, c0 = host_busy(), tree_cpu(live.proc.pid)
    gen.stdin.write("go\n")
    gen.stdin.flush()
    g = json.loads(gen.stdout.readline())
    t1 = time.time()
    h1, c1 = host_busy(), tree_cpu(live.proc.pid)
    gen.wait(timeout=30)
    l1 = link_stats(NSS, IFS)
    seen_at_end = live.last().get("packets", 0)
    # the backlog: wait until every frame sent was analysed (or was dropped), at most --drain s
    deadline = t1 + a.drain
    caught_up = None
    while time.time() < deadline and live.proc.poll() is None:
        s = live.last()
        if s.get("packets", 0) + (s.get("drops") or {}).get("dropped", 0) >= g["sent"]:
            caught_up = round(live.stats[-1][0] - t1, 2)
            break
        time.sleep(0.2)
    final = live.stop()
    # the rate followed during the window: stats events between t0 and t1
    inside = [(t, e["packets"]) for t, e in live.stats if t0 <= t <= t1 + 0.05]
    during = (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0]) if len(inside) >= 2 else None
    p99s = [e["latency_ms"].get("p99", 0) for t, e in live.stats if t0 <= t and e["latency_ms"].get("count")]
    d = final.get("drops", {})
    lat = final.get("latency_ms", {})
    return {"backend": backend, "rate": rate, "seconds": g["seconds"], "offered_pps": g["pps"], "sent": g["sent"],
            "veth_tx_dropped": l1.get("tx_dropped", 0) - l0.get("tx_dropped", 0), "send_errors": g["send_errors"],
            "gen_cpu_s": g["cpu_s"], "seen": final.get("packets"), "seen_pps": round(final.get("packets", 0) / g["seconds"]),
            "seen_pps_during": round(during) if during else None, "seen_by_end_of_traffic": seen_at_end,
            "dropped": d.get("dropped"), "received": d.get("received"), "unread_at_stop": d.get("unread_at_stop", 0),
            "drop_source": d.get("source"), "caught_up_after_s": caught_up,
            "latency_ms": {k: lat.get(k) for k in ("count", "p50", "p99", "max")},
            "worst_1s_p99_ms": max(p99s) if p99s else None, "events": dict(live.counts),
            "flows_total": final.get("flows_total"), "conns_started": g["started"], "rc": live.proc.returncode,
            # during the traffic, in CPUs busy: the whole machine, the live process (and its tcpdump), the
            # generator, and the rest (other work on the machine, and kernel work not charged to them)
            "host_cpus": round((h1 - h0) / (t1 - t0), 2), "live_cpus": round((c1 - c0) / (t1 - t0), 2),
            "gen_cpus": round(g["cpu_s"] / (t1 - t0), 2),
            "other_cpus": round((h1 - h0 - (c1 - c0) - g["cpu_s"]) / (t1 - t0), 2), "loadavg": os.getloadavg()[0],
            **({"stderr": live.stderr} if live.proc.returncode else {})}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", action="append", default=[], metavar="BACKEND:R1,R2,...",
                    help="a backend and its rates (repeatable)")
    ap.add_argument("--backends", default="tcpdump,afpacket,scapy", help="with --rates, when no --sweep")
    ap.add_argument("--rates", default="20000,40000,60000,80000")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrent", type=int, default=500, help="connections interleaved")
    ap.add_argument("--rounds", type=int, default=40, help="request/response rounds per connection")
    ap.add_argument("--payload", type=int, default=64)
    ap.add_argument("--open-frac", type=float, default=0.0)
    ap.add_argument("--drain", type=float, default=30.0, help="max seconds to wait for the backlog after traffic")
    ap.add_argument("--stop-after-drops", action="store_true", help="skip a backend's higher rates once it drops")
    ap.add_argument("--live-args", default="--snaplen 256",
                    help="extra `tcpfsm live` options ('' for the defaults: see the snaplen note in bench/README.md)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "live_burst.json"))
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("live_burst.py needs root (network namespaces, capture)")
    plan = []
    for s in a.sweep:
        b, _, rs = s.partition(":")
        plan.append((b, [int(float(r)) for r in rs.split(",") if r]))
    if not plan:
        plan = [(b, [int(float(r)) for r in a.rates.split(",")]) for b in a.backends.split(",")]
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: (cleanup(), sys.exit(1)))
    results = []
    try:
        setup()
        seed = 1
        for b, rates in plan:
            for r in rates:
                res = run_one(b, r, a, seed)
                seed += 1
                results.append(res)
                print(json.dumps(res), flush=True)
                if a.stop_after_drops and res["dropped"]:
                    break
    finally:
        cleanup()
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    meta = {"live_args": a.live_args, "cpus": os.cpu_count(), "seconds": a.seconds, "concurrent": a.concurrent, "rounds": a.rounds,
            "payload": a.payload, "packets_per_conn": 7 + 2 * a.rounds}
    with open(a.out, "w") as fh:
        json.dump({"settings": meta, "runs": results}, fh, indent=2)
    print(f"{'backend':9} {'offered':>8} {'seen/s':>8} {'during':>8} {'dropped':>9} {'caught up':>9} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'worst p99':>9}  cpus: live gen other load")
    for r in results:
        lat = r["latency_ms"]
        print(f"{r['backend']:9} {r['offered_pps']:8} {r['seen_pps']:8} {str(r['seen_pps_during']):>8} "
              f"{r['dropped']:9} {str(r['caught_up_after_s']):>9} {str(lat.get('p50')):>8} {str(lat.get('p99')):>8} "
              f"{str(r['worst_1s_p99_ms']):>9}        {r['live_cpus']:4} {r['gen_cpus']:4} {r['other_cpus']:5} "
              f"{r['loadavg']:4.1f}")


if __name__ == "__main__":
    main()
