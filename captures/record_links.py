#!/usr/bin/env python3
"""Record, from the real Linux stack, the captures of the link types that capture tools write for "any"
interface and for several interfaces at once, into captures/recorded_links/ (needs root):

    python captures/record_links.py

Two network namespaces joined by a veth pair (client 10.76.0.1, server 10.76.0.2); in the client namespace
one TCP connection to the server (request, response, close) and one to the client's own loopback
(127.0.0.1, the same exchange), captured at the same time by

  any_sll.pcap        tcpdump -i any -y LINUX_SLL     (LINUX_SLL, 113: older tcpdumps' default)
  any_sll2.pcap       tcpdump -i any                  (LINUX_SLL2, 276: tcpdump 4.99's default)
  dumpcap_two.pcapng  dumpcap -i <veth> -i lo         (pcapng, two Ethernet interfaces)
  dumpcap_any.pcapng  dumpcap -i any                  (pcapng, one LINUX_SLL interface)

Everything created is removed at the end; each process is stopped by its PID; the whole run is bounded.
tests/test_links.py compares each file with tshark, segment by segment, through every engine.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recorded_links")
PID = os.getpid()
C, S = f"trl-c-{PID}", f"trl-s-{PID}"
VC, VS = f"trlc{PID}"[:15], f"trls{PID}"[:15]

SERVER = r"""
import socket, sys
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], 8080)); l.listen(4); l.settimeout(20)
print("ready", flush=True)
c, _ = l.accept(); c.recv(100); c.sendall(b"HTTP/1.0 200 OK\r\n\r\nhello"); c.recv(100); c.close()
"""
CLIENT = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], 8080), timeout=10)
s.sendall(b"GET / HTTP/1.0\r\n\r\n"); s.recv(100); s.close(); time.sleep(0.3)
"""


def sh(*cmd):
    subprocess.run(cmd, check=True, capture_output=True, timeout=20)


def main() -> int:
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    os.makedirs(OUT, exist_ok=True)
    procs: list[subprocess.Popen] = []
    made: list[str] = []
    try:
        for ns in (C, S):
            sh("ip", "netns", "add", ns)
            made.append(ns)
        sh("ip", "link", "add", VC, "netns", C, "type", "veth", "peer", "name", VS, "netns", S)
        for ns, dev, ip in ((C, VC, "10.76.0.1"), (S, VS, "10.76.0.2")):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        ex = ["ip", "netns", "exec", C]
        f = "tcp port 8080"
        caps = [ex + ["tcpdump", "-U", "-n", "-i", "any", "-y", "LINUX_SLL", "-w", os.path.join(OUT, "any_sll.pcap"), f],
                ex + ["tcpdump", "-U", "-n", "-i", "any", "-w", os.path.join(OUT, "any_sll2.pcap"), f],
                ex + ["dumpcap", "-q", "-i", VC, "-i", "lo", "-f", f, "-w", os.path.join(OUT, "dumpcap_two.pcapng")],
                ex + ["dumpcap", "-q", "-i", "any", "-f", f, "-w", os.path.join(OUT, "dumpcap_any.pcapng")]]
        for cmd in caps:
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(2.0)                               # the capturers are listening
        for ns, srv_ip, dst in ((S, "10.76.0.2", "10.76.0.2"), (C, "127.0.0.1", "127.0.0.1")):
            srv = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, srv_ip],
                                   stdout=subprocess.PIPE, text=True)
            procs.append(srv)
            assert srv.stdout.readline().strip() == "ready"
            subprocess.run(ex + [sys.executable, "-c", CLIENT, dst], check=True, timeout=20)
            srv.wait(timeout=20)
        time.sleep(1.0)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait(timeout=20)
        for name in sorted(os.listdir(OUT)):
            os.chmod(os.path.join(OUT, name), 0o644)
        print("wrote", ", ".join(sorted(os.listdir(OUT))), "to", OUT)
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=5)
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
