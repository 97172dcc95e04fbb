#!/usr/bin/env python3
"""Record the ICMP-explains-TCP captures (issue 8 part 4) and hop counts (part 2) from the real Linux stack.

Topology per scenario: a client namespace, a router namespace that forwards (TTL / hop limit decremented
by the kernel) and a server namespace, on two veth links; IPv4 and IPv6 on both:

    client 10.80.N.1 / fd80:N::1  --  10.80.N.254 / fd80:N::fe  router  10.81.N.254 / fd81:N::fe  --  server 10.81.N.2 / fd81:N::2

tcpdump runs on the client's veth (TCP, ICMP, and ICMPv6 errors: types below 128), so the server's
segments arrive with TTL 63 (one hop) and every ICMP error reaches the capture before the client.

* `reject`: a clean exchange on port 6000, then connect() to ports refused by iptables/ip6tables REJECT:
  6001 on the server (icmp-port-unreachable / icmp6-port-unreachable), 6002, 6003, 6004 on the router's
  FORWARD chain (icmp-host-unreachable / icmp6-addr-unreachable, icmp-admin-prohibited /
  icmp6-adm-prohibited, icmp-net-unreachable / icmp6-no-route), IPv4 then IPv6.
* `ttl_exceeded`: connect() with IP_TTL / IPV6_UNICAST_HOPS 1: the router answers the SYN with time
  exceeded; then one normal connection.
* `pmtu`: the router's side of its link to the server has MTU 1000 (IPv4, a route MTU) / 1280 (IPv6), the
  server's side 1500 (so its MSS does not tell); the client sends 30000 bytes with DF (Linux's default): fragmentation needed / packet too big, the client resends smaller.

Beside each capture, NAME.json holds the kernel's own view from the client: per connect(), the errno
(or "ok") and how long connect() took, and the client's ICMP counters (nstat: TcpExtLockDroppedIcmps
counts errors that arrived while connect() still held the socket: Linux keeps them as soft errors and
retransmits the SYN). ICMP rate limits are off in the router and server namespaces.

    python captures/icmp/record_icmp.py [--only NAME ...] [--out captures/icmp]

Root only. Every namespace and process it starts is removed again by its exact name / PID.
"""
from __future__ import annotations

import argparse
import json
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
    CAPTURE_FILTER = "tcp or icmp or icmp6"
    SETTLE = 0.3
    LINGER = 1.0
    CHECK_DROPS = True

    def __init__(self, n: int):
        self.c, self.r, self.s = f"tic{n}-{PID}", f"tir{n}-{PID}", f"tis{n}-{PID}"
        self.cip, self.sip = f"10.80.{n}.1", f"10.81.{n}.2"
        self.cip6, self.sip6 = f"fd80:{n}::1", f"fd81:{n}::2"
        for ns in (self.c, self.r, self.s):
            self.add_ns(ns)
            self.ex(ns, "ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", "veth0", "netns", self.c, "type", "veth", "peer", "name", "vcli", "netns", self.r)
        sh("ip", "link", "add", "vsrv", "netns", self.r, "type", "veth", "peer", "name", "veth0", "netns", self.s)
        for ns, dev, a4, a6 in ((self.c, "veth0", f"10.80.{n}.1/24", f"fd80:{n}::1/64"),
                                (self.r, "vcli", f"10.80.{n}.254/24", f"fd80:{n}::fe/64"),
                                (self.r, "vsrv", f"10.81.{n}.254/24", f"fd81:{n}::fe/64"),
                                (self.s, "veth0", f"10.81.{n}.2/24", f"fd81:{n}::2/64")):
            self.ex(ns, "ip", "addr", "add", a4, "dev", dev)
            self.ex(ns, "ip", "-6", "addr", "add", a6, "dev", dev, "nodad")
            self.ex(ns, "ip", "link", "set", dev, "up")
            self.ex(ns, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", check=False)
        for ns, gw4, gw6 in ((self.c, f"10.80.{n}.254", f"fd80:{n}::fe"), (self.s, f"10.81.{n}.254", f"fd81:{n}::fe")):
            self.ex(ns, "ip", "route", "add", "default", "via", gw4)
            self.ex(ns, "ip", "-6", "route", "add", "default", "via", gw6)
        self.ex(self.r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.ex(self.r, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        for ns in (self.r, self.s):
            self.ex(ns, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0")
            self.ex(ns, "sysctl", "-qw", "net.ipv6.icmp.ratelimit=0")


SERVER = """
import socket, sys
l = socket.socket(socket.AF_INET6); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
l.bind(("::", 6000)); l.listen(8); l.settimeout(30)
for _ in range(int(sys.argv[1])):
    c = l.accept()[0]; c.settimeout(20)
    n = 0
    while True:
        b = c.recv(65536)
        if not b: break
        n += len(b)
    c.sendall(b"got %d" % n); c.close()
"""

# argv: JSON list of [host, port, ttl (0 = default), bytes to send]; prints the kernel's view as JSON
CLIENT = """
import errno, json, socket, sys, time
out = []
for host, port, ttl, size in json.loads(sys.argv[1]):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam)
    if ttl:
        if fam == socket.AF_INET:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        else:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
    s.settimeout(15)
    t0 = time.time()
    try:
        s.connect((host, port))
        res = "ok"
    except OSError as e:
        res = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__
    took = round(time.time() - t0, 3)
    if res == "ok":
        local = s.getsockname()
        s.sendall(b"x" * size); s.shutdown(socket.SHUT_WR)
        s.recv(100)
    else:
        local = s.getsockname()
    s.close()
    out.append({"host": host, "port": port, "ttl": ttl, "local_port": local[1], "connect": res, "seconds": took})
    time.sleep(0.3)
print(json.dumps(out))
"""


def run(lab: Lab, out: str, attempts: list, accepts: int) -> list:
    cap = lab.capture(out)
    srv = lab.spawn(lab.s, SERVER, str(accepts))
    time.sleep(0.3)
    cli = lab.spawn(lab.c, CLIENT, json.dumps(attempts))
    got = json.loads(wait_all(cli)[0])
    if accepts:
        wait_all(srv)
    lab.stop(cap)
    # the client kernel's own counters: ICMP errors it dropped because the socket was busy (the error then
    # only becomes a soft error and the SYN is retransmitted) or because they quoted an out-of-window seq
    counters = {}
    for line in lab.ex(lab.c, "nstat", "-asz").stdout.splitlines():
        f = line.split()
        if len(f) >= 2 and f[0] in ("TcpExtLockDroppedIcmps", "TcpExtOutOfWindowIcmps", "IcmpInDestUnreachs",
                                    "IcmpInTimeExcds", "Icmp6InDestUnreachs", "Icmp6InTimeExcds", "Icmp6InPktTooBigs"):
            counters[f[0]] = int(f[1])
    return {"connects": got, "counters": counters}


def sc_reject(lab: Lab, out: str) -> list:
    for tool, rules in (("iptables", (("6002", "icmp-host-unreachable"), ("6003", "icmp-admin-prohibited"),
                                      ("6004", "icmp-net-unreachable"))),
                        ("ip6tables", (("6002", "icmp6-addr-unreachable"), ("6003", "icmp6-adm-prohibited"),
                                       ("6004", "icmp6-no-route")))):
        for port, how in rules:
            lab.ex(lab.r, tool, "-A", "FORWARD", "-p", "tcp", "--dport", port, "-j", "REJECT", "--reject-with", how)
    lab.ex(lab.s, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "6001", "-j", "REJECT",
           "--reject-with", "icmp-port-unreachable")
    lab.ex(lab.s, "ip6tables", "-A", "INPUT", "-p", "tcp", "--dport", "6001", "-j", "REJECT",
           "--reject-with", "icmp6-port-unreachable")
    attempts = [[lab.sip, 6000, 0, 2000]] + [[lab.sip, p, 0, 0] for p in (6001, 6002, 6003, 6004)] + \
        [[lab.sip6, 6000, 0, 2000]] + [[lab.sip6, p, 0, 0] for p in (6001, 6002, 6003, 6004)]
    return run(lab, out, attempts, 2)


def sc_ttl_exceeded(lab: Lab, out: str) -> list:
    attempts = [[lab.sip, 6000, 1, 0], [lab.sip6, 6000, 1, 0], [lab.sip, 6000, 0, 1000]]
    return run(lab, out, attempts, 1)


def sc_pmtu(lab: Lab, out: str) -> list:
    # only the router's side is small: the server's MSS (from its own link, 1500) does not give it away
    lab.ex(lab.r, "ip", "link", "set", "vsrv", "mtu", "1280")
    # IPv4 on that link: 1000 bytes (a route MTU; the link carries 1280 for IPv6's minimum)
    n = lab.cip.split(".")[2]
    lab.ex(lab.r, "ip", "route", "replace", f"10.81.{n}.0/24", "dev", "vsrv", "mtu", "1000")
    attempts = [[lab.sip, 6000, 0, 30000], [lab.sip6, 6000, 0, 30000]]
    return run(lab, out, attempts, 2)


SCENARIOS = {"reject": sc_reject, "ttl_exceeded": sc_ttl_exceeded, "pmtu": sc_pmtu}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    a = ap.parse_args()
    if os.geteuid():
        sys.exit("record_icmp.py needs root")
    signal.signal(signal.SIGTERM, lambda *x: (cleanup(), sys.exit(1)))
    for n, name in enumerate(SCENARIOS, start=1):
        if a.only and name not in a.only:
            continue
        try:
            lab = Lab(n)
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, name + ".pcap")
                kernel = SCENARIOS[name](lab, path)
                os.makedirs(a.out, exist_ok=True)
                os.replace(path, os.path.join(a.out, name + ".pcap"))
                with open(os.path.join(a.out, name + ".json"), "w") as f:
                    json.dump({"client": lab.cip, "client6": lab.cip6, "server": lab.sip, "server6": lab.sip6,
                               "router": f"10.80.{n}.254", "router6": f"fd80:{n}::fe", **kernel}, f, indent=1)
                    f.write("\n")
                print(f"{name}: {os.path.getsize(os.path.join(a.out, name + '.pcap'))} bytes; {kernel}")
        finally:
            cleanup()


if __name__ == "__main__":
    try:
        main()
    finally:
        cleanup()
