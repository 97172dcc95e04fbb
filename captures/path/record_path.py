#!/usr/bin/env python3
"""Record the path-health captures (issue 8) from the real Linux TCP stack.

Each scenario builds a client and a server network namespace joined by one veth pair, runs real sockets
in them, and captures the client's veth with tcpdump (headers only: snaplen 200). What the network
does to the packets is done by the kernel: iptables drops (statistic nth match: deterministic loss),
an NFQUEUE holder for reordering (needs the `netfilterqueue` Python module; the scenario is skipped
without it), a receiver that stops reading for a zero-window stall, SO_KEEPALIVE for keep-alives, a
listener that never accepts for an overflowing accept queue.

    python captures/path/record_path.py [--only NAME ...] [--out captures/path]

Root only. Every namespace and process it starts is removed again by its exact name / PID.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # captures/: netlab
import netlab  # noqa: E402
from netlab import cleanup, sh, wait_all  # noqa: E402,F401

PID = os.getpid()


class Lab(netlab.Lab):
    """Client namespace <-veth-> server namespace; 10.79.N.1 (client), 10.79.N.2 (server)."""

    def __init__(self, n: int):
        self.c, self.s = f"tpc{n}-{PID}", f"tps{n}-{PID}"
        self.cip, self.sip = f"10.79.{n}.1", f"10.79.{n}.2"
        for ns in (self.c, self.s):
            self.add_ns(ns)
        sh("ip", "link", "add", "veth0", "netns", self.c, "type", "veth", "peer", "name", "veth0", "netns", self.s)
        for ns, ip in ((self.c, self.cip), (self.s, self.sip)):
            self.ex(ns, "ip", "addr", "add", f"{ip}/24", "dev", "veth0")
            self.ex(ns, "ip", "link", "set", "veth0", "up")
            self.ex(ns, "ip", "link", "set", "lo", "up")
            # one segment per packet on the wire, as between two real hosts
            self.ex(ns, "ethtool", "-K", "veth0", "tso", "off", "gso", "off", "gro", "off", check=False)


SERVER_SINK = """
import socket, sys, time
host, port, delay, rcvbuf = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if rcvbuf: l.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
l.bind((host, port)); l.listen(8); l.settimeout(20)
c, _ = l.accept(); c.settimeout(30)
time.sleep(delay)                                  # the application is busy: it does not read
n = 0
while True:
    b = c.recv(65536)
    if not b: break
    n += len(b)
c.sendall(b"done %d" % n); c.close()
"""

CLIENT_SEND = """
import socket, sys, time
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
deadline = time.time() + 10
while True:
    try:
        s = socket.create_connection((host, port), timeout=10); break
    except OSError:
        if time.time() > deadline: raise
        time.sleep(0.1)
s.settimeout(30)
s.sendall(b"x" * size); s.shutdown(socket.SHUT_WR)
print(s.recv(100).decode()); s.close()
"""


def sc_loss_bulk(lab: Lab, out: str) -> None:
    """2 MB client -> server; the server's namespace drops every 40th data segment it receives (iptables
    statistic nth): retransmissions, duplicate ACKs, fast retransmissions, SACK."""
    lab.ex(lab.s, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "5001", "-m", "length", "--length", "600:65535",
           "-m", "statistic", "--mode", "nth", "--every", "40", "--packet", "7", "-j", "DROP")
    cap = lab.capture(out)
    srv = lab.spawn(lab.s, SERVER_SINK, lab.sip, "5001", "0", "0")
    cli = lab.spawn(lab.c, CLIENT_SEND, lab.sip, "5001", str(2 << 20))
    wait_all(cli, srv)
    lab.stop(cap)


def sc_zero_window(lab: Lab, out: str) -> None:
    """1 MB client -> server whose application does not read for 3 s with a small receive buffer: the
    server advertises a zero window, the client probes, then a window update reopens it."""
    cap = lab.capture(out)
    srv = lab.spawn(lab.s, SERVER_SINK, lab.sip, "5002", "3", "8192")
    cli = lab.spawn(lab.c, CLIENT_SEND, lab.sip, "5002", str(1 << 20))
    wait_all(cli, srv)
    lab.stop(cap)


def sc_keepalive(lab: Lab, out: str) -> None:
    """Two idle connections for 4.5 s: one with SO_KEEPALIVE (idle 1 s, interval 1 s: keep-alives and their
    ACKs), one without (nothing on the wire while idle)."""
    srv = """
    import socket, sys, time
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((sys.argv[1], 5003)); l.listen(8); l.settimeout(20)
    cs = []
    for _ in range(2):
        c = l.accept()[0]; c.settimeout(20)
        c.recv(10); c.sendall(b"pong"); cs.append(c)
    for c in cs:
        c.recv(10); c.close()
    """
    cli = """
    import socket, sys, time
    time.sleep(0.5)
    ss = []
    for ka in (True, False):
        s = socket.create_connection((sys.argv[1], 5003), timeout=10)
        if ka:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
        s.sendall(b"ping"); s.recv(10); ss.append(s)
    time.sleep(4.5)
    for s in ss:
        s.close()
    """
    cap = lab.capture(out)
    a = lab.spawn(lab.s, srv, lab.sip)
    b = lab.spawn(lab.c, cli, lab.sip)
    wait_all(b, a)
    lab.stop(cap)


def sc_slow_handshake(lab: Lab, out: str) -> None:
    """The server's namespace drops SYNs to port 5004 for the first 2.5 s: the client's SYN is
    retransmitted at 1 s and 3 s and the connect takes ~3 s; then a normal exchange."""
    lab.ex(lab.s, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "5004", "--syn", "-j", "DROP")
    cap = lab.capture(out)
    srv = lab.spawn(lab.s, SERVER_SINK, lab.sip, "5004", "0", "0")
    time.sleep(0.3)
    cli = lab.spawn(lab.c, CLIENT_SEND, lab.sip, "5004", "20000")
    time.sleep(2.5)
    lab.ex(lab.s, "iptables", "-D", "INPUT", "-p", "tcp", "--dport", "5004", "--syn", "-j", "DROP")
    wait_all(cli, srv)
    lab.stop(cap)


def sc_listen_overflow(lab: Lab, out: str) -> None:
    """A listener with backlog 1 that never accepts; 6 clients connect at once. An NFQUEUE holder in the
    client's namespace keeps the SYN+ACKs until all 6 have come (so all 6 handshakes are pending at once);
    once the accept queue is full the server ignores the clients' handshake ACKs and retransmits its
    SYN+ACKs (Linux, tcp_abort_on_overflow=0), and their data is not acknowledged."""
    if not _has_nfqueue("listen_overflow"):
        return
    srv = """
    import socket, sys, time
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((sys.argv[1], 5005)); l.listen(1)
    time.sleep(8); l.close()
    """
    cli = """
    import socket, sys, time
    time.sleep(0.5)
    ss = []
    for i in range(6):
        s = socket.socket(); s.setblocking(False)
        s.connect_ex((sys.argv[1], 5005)); ss.append(s)
    time.sleep(1.0)
    for s in ss:
        try: s.send(b"hello")
        except OSError: pass
    time.sleep(5)
    for s in ss: s.close()
    """
    batcher = """
    import signal, sys, time
    from netfilterqueue import NetfilterQueue
    held = []
    def cb(pkt):
        pkt.retain(); held.append(pkt)
        if len(held) >= 6:
            for p in held: p.accept()
            held.clear()
    q = NetfilterQueue(); q.bind(2, cb)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *a: sys.exit(0))
    try:
        q.run()
    finally:
        q.unbind()
    """
    # only the first SYN+ACK of each handshake is batched: the server's retransmissions pass at once
    lab.ex(lab.c, "iptables", "-A", "INPUT", "-p", "tcp", "--sport", "5005", "--tcp-flags", "SYN,ACK", "SYN,ACK",
           "-m", "connbytes", "--connbytes", "0:1", "--connbytes-dir", "reply", "--connbytes-mode", "packets",
           "-j", "NFQUEUE", "--queue-num", "2")
    h = lab.spawn(lab.c, batcher)
    time.sleep(0.5)
    cap = lab.capture(out)
    a = lab.spawn(lab.s, srv, lab.sip)
    b = lab.spawn(lab.c, cli, lab.sip)
    wait_all(b, a)
    lab.stop(cap)
    h.send_signal(signal.SIGTERM)
    h.wait(timeout=5)


def _has_nfqueue(name: str) -> bool:
    try:
        import netfilterqueue  # noqa: F401
        return True
    except ImportError:
        print(f"{name}: skipped (pip install netfilterqueue; apt-get install libnetfilter-queue-dev)")
        return False


def sc_reorder(lab: Lab, out: str) -> None:
    """500 kB client -> server; an NFQUEUE holder in the server's namespace keeps every 25th data segment
    back until the next one has passed (reordering, no loss)."""
    if not _has_nfqueue("reorder"):
        return
    holder = """
    import sys, time
    from netfilterqueue import NetfilterQueue
    held = []
    n = [0]
    def cb(pkt):
        n[0] += 1
        if n[0] % 25 == 7 and not held:
            pkt.retain(); held.append(pkt); return
        pkt.accept()
        while held:
            held.pop().accept()
    q = NetfilterQueue(); q.bind(1, cb)
    import signal
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *a: sys.exit(0))
    try:
        q.run()
    finally:
        q.unbind()
    """
    lab.ex(lab.s, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "5006", "-m", "length", "--length",
           "600:65535", "-j", "NFQUEUE", "--queue-num", "1")
    h = lab.spawn(lab.s, holder)
    time.sleep(0.5)
    cap = lab.capture(out)
    srv = lab.spawn(lab.s, SERVER_SINK, lab.sip, "5006", "0", "0")
    cli = lab.spawn(lab.c, CLIENT_SEND, lab.sip, "5006", str(500_000))
    wait_all(cli, srv)
    lab.stop(cap)
    h.send_signal(signal.SIGTERM)
    h.wait(timeout=5)


SCENARIOS = {"loss_bulk": sc_loss_bulk, "zero_window": sc_zero_window, "keepalive": sc_keepalive,
             "slow_handshake": sc_slow_handshake, "listen_overflow": sc_listen_overflow, "reorder": sc_reorder}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    a = ap.parse_args()
    if os.geteuid():
        sys.exit("record_path.py needs root")
    signal.signal(signal.SIGTERM, lambda *x: (cleanup(), sys.exit(1)))
    for n, name in enumerate(SCENARIOS, start=1):
        if a.only and name not in a.only:
            continue
        lab = None
        try:
            lab = Lab(n)
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, name + ".pcap")
                SCENARIOS[name](lab, path)
                if os.path.exists(path):
                    os.makedirs(a.out, exist_ok=True)
                    os.replace(path, os.path.join(a.out, name + ".pcap"))
                    print(f"{name}: {os.path.getsize(os.path.join(a.out, name + '.pcap'))} bytes")
        finally:
            cleanup()


if __name__ == "__main__":
    try:
        main()
    finally:
        cleanup()
