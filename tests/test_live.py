"""Live mode against real traffic: real sockets in network namespaces created here, each backend sniffing.

Each scenario builds a client and a server namespace joined by a veth pair (names carry this PID and a
counter; everything created is removed in `finally`, processes killed by PID). The kernel's view (`ss
-tanH` in both namespaces) is compared with the states the emitted events say, at a quiet moment; timers
must fire with no packet (`--timer time_wait=2`, `--threshold stuck_close_wait=1.5`); SIGTERM must leave a
readable pcap and a final summary with the backend's drop counts. Skipped when not root.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

ENV = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
TCPFSM = [sys.executable, "-m", "tcpfsm.cli"]
PID = os.getpid()
_n = itertools.count(1)

root_only = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                               reason="needs root and iproute2 (network namespaces)")

SERVER = r"""
import socket, sys, time
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], 8080)); l.listen(8)
print("ready", flush=True)
keep = []
for i in range(2):
    c, _ = l.accept()
    c.recv(100)
    c.sendall(b"pong")
    if i == 0:                      # A: close once the client has closed (passive close)
        c.recv(100)
        c.close()
    else:                           # B: never close: CLOSE_WAIT leak
        keep.append(c)
time.sleep(60)
"""

CLIENT = r"""
import socket, sys, time
for port in (41001, 41002):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], port))
    s.connect((sys.argv[2], 8080))
    s.sendall(b"ping"); s.recv(100)
    s.close()                       # active close: A ends in TIME_WAIT, B in FIN_WAIT_2
    time.sleep(0.2)
"""


def sh(*cmd, check=True):
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


class NetPair:
    """Two namespaces joined by a veth pair: client 10.79.K.1 (veth tlcK-PID) <-> server 10.79.K.2."""

    def __init__(self):
        k = next(_n)
        self.c, self.s = f"tfl-c{k}-{PID}", f"tfl-s{k}-{PID}"
        self.ifc, self.ifs = f"tlc{k}-{PID}"[:15], f"tls{k}-{PID}"[:15]
        self.cip, self.sip = f"10.79.{k}.1", f"10.79.{k}.2"
        self.made: list[str] = []
        self.procs: list[subprocess.Popen] = []
        try:
            for ns in (self.c, self.s):
                sh("ip", "netns", "add", ns)
                self.made.append(ns)
            sh("ip", "link", "add", self.ifc, "netns", self.c, "type", "veth", "peer", "name", self.ifs,
               "netns", self.s)
            for ns, dev, ip in ((self.c, self.ifc, self.cip), (self.s, self.ifs, self.sip)):
                sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
                sh("ip", "-n", ns, "link", "set", dev, "up")
                sh("ip", "-n", ns, "link", "set", "lo", "up")
        except Exception:
            self.close()
            raise

    def popen(self, ns, args, **kw):
        p = subprocess.Popen(["ip", "netns", "exec", ns, *args], env=ENV, **kw)
        self.procs.append(p)
        return p

    def ss(self, ns) -> dict[tuple[str, str], str]:
        out = sh("ip", "netns", "exec", ns, "ss", "-tanH").stdout
        socks = {}
        for line in out.splitlines():
            f = line.split()
            if len(f) >= 5 and f[0] != "LISTEN":
                socks[(f[3], f[4])] = {"ESTAB": "ESTABLISHED", "SYN-RECV": "SYN_RECEIVED"}.get(
                    f[0], f[0].replace("-", "_"))
        return socks

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for ns in self.made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


class Reader(threading.Thread):
    """Collects JSON lines from a process's stdout with their arrival times."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream = stream
        self.events: list[tuple[float, dict]] = []
        self.start()

    def run(self):
        for line in self.stream:
            try:
                self.events.append((time.time(), json.loads(line)))
            except ValueError:
                self.events.append((time.time(), {"event": "garbage", "line": line}))

    def wait_for(self, pred, timeout):
        end = time.time() + timeout
        while time.time() < end:
            for t, e in list(self.events):
                if pred(e):
                    return t, e
            time.sleep(0.05)
        return None


def states_at(events: list[dict], at: float) -> dict[tuple[str, str], str]:
    """(local, remote) -> state of every endpoint as the events say at `at` (CLOSED left out)."""
    ends = {e["id"]: e for e in events if e["event"] == "flow_end"}
    cur: dict[tuple[int, str], str] = {}
    for e in events:
        if e["event"] == "transition" and e["ts"] <= at:
            cur[(e["flow"], e["endpoint"])] = e["to"]
    out = {}
    for (fid, role), st in cur.items():
        f = ends[fid]
        c, s = f"{f['client']['ip']}:{f['client']['port']}", f"{f['server']['ip']}:{f['server']['port']}"
        if st not in ("CLOSED", "LISTEN"):
            out[(c, s) if role == "client" else (s, c)] = st
    return out


def run_scenario(net: NetPair, capture_cmd: list[str], tmp_path):
    """Start the capture (in the client namespace), wait for its first stats event, drive A and B, take the
    kernel's view at a quiet moment, wait for the timers, SIGTERM. Returns what happened."""
    cap = net.popen(net.c, capture_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rd = Reader(cap.stdout)
    assert rd.wait_for(lambda e: e["event"] == "stats", 20), "capture never started: " + (
        cap.stderr.read() if cap.poll() is not None else "no stats event")
    srv = net.popen(net.s, [sys.executable, "-c", SERVER, net.sip], stdout=subprocess.PIPE, text=True)
    assert srv.stdout.readline().strip() == "ready"
    cli = net.popen(net.c, [sys.executable, "-c", CLIENT, net.cip, net.sip])
    assert cli.wait(timeout=10) == 0
    time.sleep(0.6)                         # quiet: the delayed ACKs are out, no kernel timer due for 60 s
    t_ss = time.time()
    kernel = {**net.ss(net.c), **net.ss(net.s)}
    # the 2 s TIME_WAIT and the 1.5 s stuck CLOSE_WAIT must be reported with no further packet
    tw = rd.wait_for(lambda e: e["event"] == "transition" and e["cause"] == "timer:2MSL", 6)
    stuck = rd.wait_for(lambda e: e["event"] == "anomaly" and e.get("kind") == "stuck_close_wait", 6)
    t_term = time.time()
    cap.send_signal(signal.SIGTERM)
    rc = cap.wait(timeout=15)
    rd.join(timeout=5)
    err = cap.stderr.read()
    return dict(rc=rc, err=err, events=[e for _, e in rd.events], timed=rd.events, kernel=kernel, t_ss=t_ss,
                tw=tw, stuck=stuck, t_term=t_term)


def check_scenario(net: NetPair, r: dict, backend: str | None) -> None:
    ev = r["events"]
    assert r["rc"] == 0, r["err"]
    assert "Traceback" not in r["err"]
    assert not [e for e in ev if e["event"] == "garbage"]
    # 1. the states the events give equal the kernel's at the quiet moment
    ours = states_at(ev, r["t_ss"])
    want = {k: v for k, v in r["kernel"].items() if net.cip in k[0] + k[1]}
    assert ours == want, (ours, want)
    assert want[(f"{net.cip}:41001", f"{net.sip}:8080")] == "TIME_WAIT"
    assert want[(f"{net.sip}:8080", f"{net.cip}:41002")] == "CLOSE_WAIT"
    # 2. the per-flow event sequence of connection A (normal close, client active)
    ends = {e["id"]: e for e in ev if e["event"] == "flow_end"}
    fa = next(i for i, f in ends.items() if f["client"]["port"] == 41001)
    seq = [(e["endpoint"], e["from"], e["to"]) for e in ev if e["event"] == "transition" and e["flow"] == fa]
    assert seq == [("client", "CLOSED", "SYN_SENT"), ("server", "LISTEN", "SYN_RECEIVED"),
                   ("client", "SYN_SENT", "ESTABLISHED"), ("server", "SYN_RECEIVED", "ESTABLISHED"),
                   ("client", "ESTABLISHED", "FIN_WAIT_1"), ("client", "FIN_WAIT_1", "FIN_WAIT_2"),
                   ("server", "ESTABLISHED", "CLOSE_WAIT"), ("server", "CLOSE_WAIT", "LAST_ACK"),
                   ("server", "LAST_ACK", "CLOSED"), ("client", "FIN_WAIT_2", "TIME_WAIT"),
                   ("client", "TIME_WAIT", "CLOSED")], seq
    # 3. timers on the clock: TIME_WAIT expired ~2 s after it began, reported then, with no packet after it
    assert r["tw"] is not None, "no TIME_WAIT expiry event"
    arrived, e = r["tw"]
    began = next(x["ts"] for x in ev if x["event"] == "transition" and x["flow"] == fa and x["to"] == "TIME_WAIT")
    assert abs(e["ts"] - began - 2.0) < 0.01
    assert arrived - began < 3.5, f"expiry reported {arrived - began:.2f} s after TIME_WAIT began"
    assert ends[fa]["last_ts"] < e["ts"]             # no packet of A after the expiry: the clock did it
    assert r["stuck"] is not None, "no stuck_close_wait"
    arrived, e = r["stuck"]
    assert e["endpoint"] == "server" and arrived < r["t_term"]
    # 4. the final summary, with the drops of the backend
    final = ev[-1]
    assert final["event"] == "stats" and final["final"] is True
    d = final["drops"]
    if backend:
        assert d["backend"] == backend and d["dropped"] == 0 and d["received"] >= final["packets"] > 0, d
    assert final["summary"]["flows"] == 2
    assert final["summary"]["states_at_end"]["server"].get("CLOSE_WAIT") == 1
    assert final["stop_reason"] == "SIGTERM"


@root_only
@pytest.mark.parametrize("backend", ["tcpdump", "afpacket", "scapy"])
def test_live_backend_matches_kernel(backend, tmp_path):
    if backend == "tcpdump" and not shutil.which("tcpdump"):
        pytest.skip("tcpdump not installed")
    net = NetPair()
    try:
        pcap = str(tmp_path / f"{backend}.pcap")
        r = run_scenario(net, TCPFSM + ["live", "-i", net.ifc, "--backend", backend, "-f", "tcp port 8080",
                                        "--timer", "time_wait=2", "--threshold", "stuck_close_wait=1.5",
                                        "--format", "jsonl", "--stats-interval", "1", "--write", pcap], tmp_path)
        check_scenario(net, r, backend)
        # SIGTERM left a valid pcap holding every packet seen, which analyses to the same transitions
        from tcpfsm.capture.reader import open_capture
        cap = open_capture(pcap)
        n = sum(len(b) for b in cap.batches())
        final = r["events"][-1]
        assert not cap.info.truncated and cap.info.records == final["packets"] == n > 0
        off = subprocess.run(TCPFSM + ["analyze", "--format", "jsonl", "--timer", "time_wait=2", pcap],
                             capture_output=True, text=True, env=ENV, cwd=ROOT)
        key = lambda e: (e["flow"], e["endpoint"], e["from"], e["to"], e["packet"])    # noqa: E731
        offline = [key(e) for e in map(json.loads, off.stdout.splitlines()) if e["event"] == "transition"]
        live = [key(e) for e in r["events"] if e["event"] == "transition" and e["packet"] is not None]
        assert sorted(live) == sorted(k for k in offline if k[4] is not None)
        # issue 9 part 3 on a real interface: every per-connection event names its connection
        per_flow = [e for e in r["events"] if e["event"] in ("transition", "flow_end")
                    or (e["event"] == "anomaly" and e.get("flow"))]
        assert per_flow and all(isinstance(e["flow"], int) and set(e["client"]) == set(e["server"]) == {"ip", "port"}
                                for e in per_flow)
        ends = {(e["client"]["ip"], e["server"]["port"]) for e in per_flow}
        assert all(port == 8080 for _, port in ends)
    finally:
        net.close()


@root_only
def test_follow_file_written_by_tcpdump(tmp_path):
    """`tcpdump -w FILE` in the namespace, `tcpfsm analyze --follow FILE` reading it as it grows."""
    if not shutil.which("tcpdump"):
        pytest.skip("tcpdump not installed")
    net = NetPair()
    try:
        path = str(tmp_path / "growing.pcap")
        td = net.popen(net.c, ["tcpdump", "-i", net.ifc, "-U", "-n", "-w", path, "tcp port 8080"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 10
        while not os.path.exists(path) and time.time() < deadline:
            time.sleep(0.05)
        r = run_scenario(net, TCPFSM + ["analyze", "--follow", path, "--format", "jsonl", "--timer", "time_wait=2",
                                        "--threshold", "stuck_close_wait=1.5"], tmp_path)
        td.send_signal(signal.SIGTERM)
        td.wait(timeout=10)
        check_scenario(net, r, None)
        assert r["events"][-1]["drops"]["backend"] == "follow"
    finally:
        net.close()


def test_follow_stdin_matches_offline():
    """A pcap stream on stdin yields exactly the offline events (transitions and per-flow findings)."""
    pcap = os.path.join(ROOT, "captures", "kernel", "concurrent_mixed.pcap")
    off = subprocess.run(TCPFSM + ["analyze", "--format", "jsonl", pcap], capture_output=True, text=True, env=ENV)
    with open(pcap, "rb") as fh:
        on = subprocess.run(TCPFSM + ["analyze", "--follow", "-"], stdin=fh, capture_output=True, text=True,
                            env=ENV, timeout=60)
    assert on.returncode == 0, on.stderr
    a = [json.loads(x) for x in off.stdout.splitlines()]
    b = [json.loads(x) for x in on.stdout.splitlines()]
    tr = lambda evs: sorted((e["flow"], e["ts"], e["endpoint"], e["from"], e["to"], e["cause"])    # noqa: E731
                            for e in evs if e["event"] == "transition")
    an = lambda evs: sorted((e["flow"], e["kind"]) for e in evs if e["event"] == "anomaly" and e["flow"])  # noqa
    assert tr(a) == tr(b) and an(a) == an(b)
    assert b[-1]["event"] == "stats" and b[-1]["summary"]["flows"] == a[-1]["summary"]["flows"]
    # the same encoder both ways: a transition is the same line, byte for byte
    lines = lambda out: sorted(x for x in out.splitlines() if x.startswith('{"event":"transition"'))  # noqa: E731
    assert lines(on.stdout) and lines(on.stdout) == lines(off.stdout)
    # packets recorded long before this run have no processing latency (it was their age: ~1e9 ms)
    assert b[-1]["latency_ms"]["count"] == 0


def test_stream_decoder_partial_records():
    """Bytes arriving in arbitrary pieces decode to the same rows as the whole file (pcap and pcapng)."""
    import random

    import numpy as np

    from tcpfsm.capture.reader import open_capture
    from tcpfsm.live.stream import StreamDecoder
    for name in ("kernel/concurrent_mixed.pcap", "links/be.pcapng"):
        path = os.path.join(ROOT, "captures", name)
        if not os.path.exists(path):
            continue
        ref = list(open_capture(path).batches(500))
        data = open(path, "rb").read()
        d, out, i, rnd = StreamDecoder(path), [], 0, random.Random(5)
        while i < len(data):
            k = rnd.choice([1, 7, 100, 1500, 9000])
            out += d.feed(data[i:i + k])
            i += k
        assert d.pending == 0
        for col in ref[0].cols:
            assert np.array_equal(np.concatenate([b.cols[col] for b in ref]),
                                  np.concatenate([b.cols[col] for b in out])), (name, col)


def _one_line_error(args, drop_net_raw=False):
    cmd = TCPFSM + args
    if drop_net_raw:                       # root without CAP_NET_RAW: what an unprivileged user has
        cmd = ["setpriv", "--bounding-set", "-net_raw", "--inh-caps", "-net_raw", *cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=30)
    lines = p.stderr.strip().splitlines()
    return p.returncode, lines


@pytest.mark.parametrize("args,needle", [
    (["live", "-i", "nosuchif0"], "no such interface"),
    (["live", "-i", "lo", "-f", "tcp port and"], "bad capture filter"),
    (["live", "-i", "lo", "--backend", "afpacket", "-f", "tcp prot 80"], "bad capture filter"),
])
def test_bad_interface_or_filter(args, needle):
    if os.geteuid() != 0:
        pytest.skip("without root the privilege check comes first")
    rc, lines = _one_line_error(args)
    assert rc == 2 and len(lines) == 1 and needle in lines[0], lines


def test_no_privilege_one_line():
    drop = os.geteuid() == 0
    if drop and not shutil.which("setpriv"):
        pytest.skip("setpriv not available to drop CAP_NET_RAW")
    rc, lines = _one_line_error(["live", "-i", "lo"], drop)
    assert rc == 2 and len(lines) == 1 and "root or the CAP_NET_RAW" in lines[0], lines
