#!/usr/bin/env python3
"""Kernel truth as a matrix: each scenario across capture points, path delays and loss positions.

captures/record.py records with the capture point on the client's veth and
~0 delay.  Here three namespaces make a path::

    client ns (xcN, 10.79.N.1) == veth == mid ns (xaN | xbN) == veth == server ns (xsN, 10.79.N.2)

The middle namespace has no addresses and does not forward (ip_forward=0);
captures/matrix_fwd.py, run inside it, is the wire: it copies every frame
between xaN and xbN through a delay line (client leg, server leg), writes
the pcap itself at the cell's tap position (client side, middle, server
side; optionally one direction only), and drops chosen frames before or
after the tap.  No tc/netem: it does not work on this machine.

Truth is ``ss -tanoH`` in the client and server namespaces, as in
record.py, taken at moments when the wire is quiet; whether each snapshot
really was quiet (no frame arriving, tapped or delivered within 0.3 s,
i.e. also 0.3 s from the moment each kernel acted) is checked afterwards
from the forwarder's frame log and written into the truth as ``quiet``.

Usage (root)::

    python captures/matrix.py [--out captures/matrix] [--only SCENARIO ...] [--cells GLOB] [--jobs N] [--list]

Outputs ``<out>/<scenario>__<point>__<delay>[__<loss>].pcap`` and ``.truth.json``.
Namespaces are ``tfmc<N>-<pid>`` / ``tfmm<N>-<pid>`` / ``tfms<N>-<pid>``;
everything started here is removed again by exact name / PID, also on
SIGINT/SIGTERM.
"""
from __future__ import annotations

import argparse
import atexit
import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import record  # noqa: E402  (the kernel-truth recorder: agent, cleanup registry, ss parsing, Lab helpers)
from record import (ACK, FIN, PID, PORT, SYN, Agent, Lab, _LOCK, _NAMESPACES, _register_ns,  # noqa: E402
                    cleanup, run)

POINTS = ("client", "middle", "server")
DELAYS_MS = (0.1, 20.0, 150.0)          # total one-way path delay, split evenly between the two legs
QUIET_S = 0.3
KERNEL_MARGIN_S = 0.01      # an in-flight snapshot is truth only if no kernel acted this close to its ss calls


def flag_str(f):
    if f is None:
        return None
    return "".join(ch for bit, ch in ((2, "S"), (1, "F"), (4, "R"), (8, "P"), (16, ".")) if f & bit) or "-"

# --------------------------------------------------------------------------
# agent: record.py's ops plus the few the new scenarios need
# --------------------------------------------------------------------------
AGENT_EXTRA = r'''
_base_do = do
MSG_FASTOPEN = getattr(socket, "MSG_FASTOPEN", 0x20000000)
TCP_FASTOPEN = getattr(socket, "TCP_FASTOPEN", 23)

def _extra(c):
    op = c["op"]
    if op == "listen_opts":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if c.get("rcvbuf"):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, c["rcvbuf"])
        if c.get("fastopen"):
            s.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, c["fastopen"])
        s.bind((c["host"], c["port"]))
        s.listen(c.get("backlog", 128))
        socks[c["id"]] = s
        return {"local": local(s)}
    if op == "accept_ready":
        # accept whatever completes within the timeout, ids assigned in accept order
        l = socks[c["lid"]]
        end = time.time() + c.get("timeout", 1)
        peers = {}
        for i in ids(c):
            left = end - time.time()
            if left <= 0:
                break
            l.settimeout(left)
            try:
                conn, peer = l.accept()
            except socket.timeout:
                break
            socks[i] = conn
            peers[i] = fmt(peer)
        return {"peers": peers}
    if op == "keepalive":
        for i in ids(c):
            s = socks[i]
            s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, c["idle"])
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, c["intvl"])
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, c["cnt"])
        return {}
    if op == "send_nb":
        # queue as much as the socket takes without blocking (bounded)
        sent = {}
        for i in ids(c):
            s = socks[i]
            s.setblocking(False)
            n, left = 0, c["n"]
            for _ in range(10000):
                if left <= 0:
                    break
                try:
                    k = s.send(b"x" * min(left, 65536))
                except BlockingIOError:
                    break
                n += k
                left -= k
            sent[i] = n
        return {"sent": sent}
    if op == "tfo_send":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # blocking: with a timeout (non-blocking underneath) a cookie-less sendto fails EINPROGRESS
        n = s.sendto(b"x" * c["n"], MSG_FASTOPEN, (c["host"], c["port"]))
        s.settimeout(c.get("timeout", 5))
        socks[c["id"]] = s
        return {"sent": n, "local": local(s)}
    return _base_do(c)

do = _extra
'''
AGENT_SRC = record.AGENT_OPS + AGENT_EXTRA + record.AGENT_LOOP


RTT_PROBE = r'''
import errno, json, socket, sys, time
out = []
for _ in range(5):
    s = socket.socket()
    s.settimeout(3)
    t = time.time()
    rc = s.connect_ex((sys.argv[1], 9))
    out.append(round((time.time() - t) * 1000, 3) if rc == errno.ECONNREFUSED else None)
    s.close()
    time.sleep(0.05)
print(json.dumps([x for x in out if x is not None] or [1e9]))
'''


def dump_truth_compact(truth: dict) -> str:
    """The truth JSON of record.dump_truth (same fields), but one line per snapshot header and per socket
    row: the matrix has ~1500 snapshots and must stay small in the repository."""
    head = dict(truth)
    snaps = head.pop("snapshots")
    parts = []
    for snap in snaps:
        meta = json.dumps({k: v for k, v in snap.items() if k != "sockets"}, separators=(",", ":"))[1:-1]
        rows = ",\n   ".join(json.dumps(r, separators=(",", ":")) for r in snap["sockets"])
        parts.append("  {%s,\"sockets\":[%s]}" % (meta, ("\n   " + rows + "\n  ") if rows else ""))
    return json.dumps(head, indent=1)[:-2] + ',\n "snapshots": [\n' + ",\n".join(parts) + "\n ]\n}\n"


def delay_tag(ms: float) -> str:
    return ("%gms" % ms)


# --------------------------------------------------------------------------
# the lab: three namespaces and the forwarder
# --------------------------------------------------------------------------
class MatrixLab(Lab):
    """record.Lab with the path client - mid - server; the forwarder writes the pcap."""

    def __init__(self, n, scenario, cell, out, agent_path, fwd_path):
        super().__init__(n, scenario, out, agent_path)
        self.cell = cell
        self.cns, self.mns, self.sns = "tfmc%d-%d" % (n, PID), "tfmm%d-%d" % (n, PID), "tfms%d-%d" % (n, PID)
        self.cif, self.aif, self.bif, self.sif = "xc%d" % n, "xa%d" % n, "xb%d" % n, "xs%d" % n
        self.caddr, self.saddr = "10.79.%d.1" % n, "10.79.%d.2" % n
        self.base = cell_name(scenario, cell)
        self.pcap = os.path.join(out, self.base + ".pcap")
        self.truth_path = os.path.join(out, self.base + ".truth.json")
        self.fwd_path = fwd_path
        self.fwd = None
        self.log_path = os.path.join(os.path.dirname(agent_path), self.base + ".frames.jsonl")
        total = cell["delay_ms"] / 1000.0
        self.dc = self.ds = total / 2
        self.D = total                     # one-way path delay, s
        self.loss = None                   # set by the scenario: {"what", "where", "count"}
        self.snaplen = 128

    # -- lifecycle -------------------------------------------------------
    def setup(self):
        for ns in (self.cns, self.mns, self.sns):
            _register_ns(ns)
            run(["ip", "netns", "add", ns])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            for k in ("all", "default"):
                run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.%s.disable_ipv6=1" % k])
        for role in ("client", "server"):
            for k in ("all", "default"):
                self.sysctls[role]["net.ipv6.conf.%s.disable_ipv6" % k] = "1"
        run(["ip", "netns", "exec", self.mns, "sysctl", "-qw", "net.ipv4.ip_forward=0"])
        run(["ip", "link", "add", self.cif, "netns", self.cns, "type", "veth", "peer", "name", self.aif,
             "netns", self.mns])
        run(["ip", "link", "add", self.sif, "netns", self.sns, "type", "veth", "peer", "name", self.bif,
             "netns", self.mns])
        for ns, ifc, addr in ((self.cns, self.cif, self.caddr), (self.sns, self.sif, self.saddr)):
            run(["ip", "-n", ns, "link", "set", ifc, "gso_max_segs", "1"])
            run(["ip", "-n", ns, "addr", "add", addr + "/24", "dev", ifc])
            run(["ip", "-n", ns, "link", "set", ifc, "up"])
        for ifc in (self.aif, self.bif):
            run(["ip", "-n", self.mns, "link", "set", ifc, "gso_max_segs", "1"])
            run(["ip", "-n", self.mns, "link", "set", ifc, "promisc", "on", "up"])
        self.cmac = run(["ip", "netns", "exec", self.cns, "cat", "/sys/class/net/%s/address" % self.cif]).stdout.strip()
        self.smac = run(["ip", "netns", "exec", self.sns, "cat", "/sys/class/net/%s/address" % self.sif]).stdout.strip()
        # static neighbours: no ARP on the wire, so the pcap is TCP only and nothing waits for resolution
        run(["ip", "-n", self.cns, "neigh", "replace", self.saddr, "lladdr", self.smac, "dev", self.cif,
             "nud", "permanent"])
        run(["ip", "-n", self.sns, "neigh", "replace", self.caddr, "lladdr", self.cmac, "dev", self.sif,
             "nud", "permanent"])
        self.fwd = Agent(self.mns, "forwarder", self.fwd_path)
        self.fwd.cmd("config", cif=self.aif, sif=self.bif, point=self.cell["point"], dc=self.dc, ds=self.ds,
                     pcap=self.pcap, log=self.log_path, snaplen=self.snaplen,
                     tap_dirs=self.cell.get("tap_dirs"), max_s=600)
        # the delay line must work before anything is recorded: RTT ~ 2 x one-way delay.  No ping on
        # this machine: a connect() to a closed port (SYN -> RST/ACK) is one round trip
        want = 2 * self.cell["delay_ms"]
        for attempt in range(3):
            r = run(["ip", "netns", "exec", self.cns, sys.executable, "-c", RTT_PROBE, self.saddr], check=False)
            try:
                rtts = json.loads(r.stdout)
            except ValueError:
                raise RuntimeError("delay line does not pass a probe: %s %s" % (r.stdout, r.stderr))
            self.measured["probe_rtt_ms"] = rtts
            # the minimum: a probe can only be late (CPU contention while other cells start), never early
            if want - 1 <= min(rtts) <= want + 5 + 0.1 * want:
                break
            time.sleep(1.0)
        else:
            raise RuntimeError("probe RTT %s ms, expected ~%.1f ms" % (rtts, want))

    def start_capture(self, snaplen=None, filt=None):
        if snaplen and snaplen != self.snaplen:
            raise ValueError("the forwarder's snaplen is fixed at setup")
        self.fwd.cmd("tap", on=True)
        time.sleep(0.3)

    def stop_capture(self):
        if self.fwd is not None and self.fwd.p.poll() is None:
            time.sleep(0.3)
            self.fwd.cmd("tap", on=False)

    def teardown(self):
        try:
            self.stop_capture()
        except Exception:
            pass
        for a in self.agents + ([self.fwd] if self.fwd else []):
            try:
                a.quit()
            except Exception:
                pass
            # record.Agent leaves its pipes open; 170 cells x 3 processes would pass select()'s 1024 fds
            for fh in (a.p.stdin, a.p.stdout):
                try:
                    if fh:
                        fh.close()
                except Exception:
                    pass
        for ns in (self.cns, self.mns, self.sns):
            subprocess.run(["ip", "netns", "del", ns], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            with _LOCK:
                if ns in _NAMESPACES:
                    _NAMESPACES.remove(ns)

    # -- scenario helpers --------------------------------------------------
    def drop(self, rid, what, where=None, **match):
        """Drop frames matching `match` at the tap position: before it (invisible) or after it (seen,
        never delivered).  `what` is the human description kept in the truth's loss field."""
        where = where or self.cell.get("loss") or "after"
        self.fwd.cmd("drop", id=rid, where=where, **match)
        self.drops.append("%s: %s (%s the tap)" % (rid, what, where))
        if self.cell.get("loss"):
            self.loss = {"what": what, "where": where + " tap", "count": match.get("count")}

    def undrop(self, rid):
        hits = self.fwd.cmd("undrop", id=rid)["hits"]
        self.measured.setdefault("drop_hits", {})[rid] = sum(hits)

    def settle(self, base=0.45):
        """Sleep long enough for an action's packets (one RTT plus the delayed ACK) to be over and
        the wire to be quiet for QUIET_S."""
        time.sleep(base + 2 * self.D)

    def quiet_snaps(self, label, until, expect=None, every=1.0, max_n=5, t0=None):
        """Snapshots in the wire's idle gaps until `until` (at most max_n kept).  A snapshot is taken
        once the wire has been idle for QUIET_S (+ margin) with nothing in flight, and kept only if the
        wire is still idle QUIET_S later; otherwise it is thrown away and the next gap is tried."""
        n = 0
        idle = QUIET_S + 0.05
        for _ in range(2000):
            if time.time() > until - idle or n >= max_n:
                break
            st = self.fwd.cmd("idle")
            now = time.time()
            if st["pending"] == 0 and now - st["last"] >= idle:
                lab_label = label if t0 is None else "%s (+%.1f s)" % (label, now - t0)
                nw = len(self.warnings)
                snap = self.snapshot(lab_label, expect)
                time.sleep(idle)
                st = self.fwd.cmd("idle")
                if st["last"] > snap["t"] - idle or st["pending"]:
                    self.snapshots.remove(snap)
                    del self.warnings[nw:]
                    self.measured["snapshots_discarded_not_quiet"] = \
                        self.measured.get("snapshots_discarded_not_quiet", 0) + 1
                    continue
                n += 1
                time.sleep(max(0.0, every - idle))
            else:
                time.sleep(0.1)
        self.sleep_until(until)
        return n

    def in_flight_burst(self, label, t_action, dur, every=0.02, max_n=40):
        """ss in both namespaces, as fast as it goes, while an action's packets are on the path.  These
        snapshots are not quiet and are not in the test; finish() keeps only those during which neither
        kernel acted (no frame left a sender or was delivered within KERNEL_MARGIN_S of the two ss
        calls), so they are truth at a moment when the tap and the kernels disagree about what has
        happened: they show when the engine moves an endpoint."""
        for _ in range(max_n):
            if time.time() - t_action > dur:
                break
            t0 = time.time()
            c = self.ss("client")
            t = time.time()
            s = self.ss("server")
            t1 = time.time()
            self.snapshots.append({"t": round(t, 6), "label": "in flight: %s (+%d ms)" % (label, (t - t_action) * 1000),
                                   "sockets": c + s, "in_flight": True, "ss_window": [round(t0, 6), round(t1, 6)]})
            time.sleep(every)

    # -- truth -----------------------------------------------------------
    def finish(self):
        st = self.fwd.cmd("log") if self.fwd and self.fwd.p.poll() is None else {"stats": {}, "rules": []}
        events = []
        frames = []
        if os.path.exists(self.log_path):
            with open(self.log_path) as fh:
                frames = [json.loads(x) for x in fh if x.strip()]
        for f in frames:
            events += [t for t in (f["t_in"], f["t_tap"], f["t_out"]) if t is not None]
        events.sort()
        tapped = sorted(f["t_tap"] for f in frames if f["t_tap"] is not None)
        kernel_events = sorted(t for f in frames for t in (f["t_in"], f["t_out"]) if t is not None)
        kept = []
        for snap in self.snapshots:
            if snap.get("in_flight"):
                w0, w1 = snap["ss_window"]
                if any(w0 - KERNEL_MARGIN_S <= x <= w1 + KERNEL_MARGIN_S for x in kernel_events):
                    self.measured["in_flight_discarded_kernel_acted"] = \
                        self.measured.get("in_flight_discarded_kernel_acted", 0) + 1
                    continue
                t = snap["t"]
                snap["frames_on_path"] = [
                    {"dir": f["dir"], "flags": flag_str(f["flags"]), "len": f["len"],
                     "tapped": f["t_tap"] is not None and f["t_tap"] < t,
                     "sent_ms_ago": round((t - f["t_in"]) * 1000, 1),
                     "lost": f["drop"]}
                    for f in frames if f["t_in"] < t and (f["t_out"] or f["t_tap"] or f["t_in"]) > t]
            kept.append(snap)
        self.snapshots[:] = kept
        for snap in self.snapshots:
            t = snap["t"]
            before = [x for x in tapped if x <= t]
            after = [x for x in tapped if x > t]
            snap["quiet_before_s"] = round(t - before[-1], 3) if before else None
            snap["quiet_after_s"] = round(after[0] - t, 3) if after else None
            # the kernels act at t_in (sender) and t_out (receiver), not at the tap: all three count
            near = min((abs(x - t) for x in events), default=None)
            snap["quiet_wire_s"] = round(near, 3) if near is not None else None
            snap["quiet"] = (near is None or near >= QUIET_S) and not snap.get("in_flight")
            if not snap["quiet"] and not snap.get("in_flight"):
                self.log("snapshot %r not quiet (%.3f s from a wire event): excluded from the test"
                         % (snap["label"], near))
        self.measured["tcp_packets_in_pcap"] = len(tapped)
        # the path delay each frame really had (arrival at the wire -> delivery): the forwarder is a
        # Python process sharing 2 cores with the other cells, so it can run late; truth uses real times
        for d in ("c2s", "s2c"):
            lat = sorted((f["t_out"] - f["t_in"]) * 1000 for f in frames if f["dir"] == d and f["t_out"])
            if lat:
                self.measured["path_delay_ms_%s_min_median_max" % d] = [
                    round(lat[0], 2), round(lat[len(lat) // 2], 2), round(lat[-1], 2)]
        self.measured["forwarder"] = st.get("stats", {})
        point = self.cell["point"]
        desc = {"client": "client side (before the client leg: what the client's NIC sees)",
                "middle": "middle (after the sender's leg, before the receiver's leg)",
                "server": "server side (after both legs for client->server frames: what the server's NIC sees)"}
        truth = {
            "scenario": self.scenario,
            "cell": self.base,
            "description": self.description,
            "hosts": {"client": self.caddr, "server": self.saddr},
            "capture_point": point,
            "capture_point_detail": desc[point] + "; written by the forwarder in the middle namespace, "
                                                  "snaplen %d" % self.snaplen,
            "delay_ms": {"client_leg": round(self.dc * 1000, 3), "server_leg": round(self.ds * 1000, 3)},
            "loss": self.loss,
            "one_sided": self.cell.get("one_sided"),
            "kernel": os.uname().release,
            "link": "client veth - mid namespace (AF_PACKET delay line, captures/matrix_fwd.py) - server veth; "
                    "gso_max_segs=1 everywhere; static ARP entries; IPv6 disabled",
            "drops": self.drops,
            "sysctls_non_default": self.sysctls,
            "measured": self.measured,
            "notes": self.notes,
            "warnings": self.warnings,
            "snapshots": self.snapshots,
        }
        with open(self.truth_path, "w") as fh:
            fh.write(dump_truth_compact(truth))


# --------------------------------------------------------------------------
# cells and scenarios
# --------------------------------------------------------------------------
def cell_name(scenario, cell):
    name = "%s__%s__%s" % (scenario, cell["point"], delay_tag(cell["delay_ms"]))
    if cell.get("loss"):
        name += "__lost-%s-tap" % cell["loss"]
    return name


def grid(points=POINTS, delays=DELAYS_MS, losses=(None,), **extra):
    return [dict(point=p, delay_ms=d, loss=l, **extra) for p in points for d in delays for l in losses]


MSCEN: dict = {}      # name -> (function, cells, long)


def mscenario(name, cells, long=False):
    def deco(fn):
        MSCEN[name] = (fn, cells, long)
        return fn
    return deco


def _setup_pair(lab, **listen):
    c, s = lab.agent("client"), lab.agent("server")
    lab.start_capture()
    if listen:
        s.cmd("listen_opts", id="L", host=lab.saddr, port=PORT, **listen)
    else:
        s.cmd("listen", id="L", host=lab.saddr, port=PORT)
    return c, s


def _established(lab, c, s, cid="a"):
    lab.connect1(c, s, cid)
    lab.exchange(c, s, cid)
    lab.settle()
    lab.snapshot("established", {"client": {"ESTAB": 1}, "server": {"ESTAB": 1}})
    time.sleep(0.4)


def _normal_close(lab, first, expire=True):
    second = "server" if first == "client" else "client"
    c, s = _setup_pair(lab)
    _established(lab, c, s)
    ag = {"client": c, "server": s}
    t_act = time.time()
    ag[first].cmd("close", id="a")
    if lab.D >= 0.01:
        lab.in_flight_burst("%s closed" % first, t_act, 2 * lab.D + 0.1)
    lab.settle()
    lab.snapshot("%s FIN-WAIT-2, %s CLOSE-WAIT" % (first, second), {first: {"FIN-WAIT-2": 1}, second: {"CLOSE-WAIT": 1}})
    time.sleep(0.4)
    r = ag[second].cmd("recv", id="a", n=1, timeout=2)
    assert r["eof"]["a"] is True, r
    t_fin2 = time.time()
    ag[second].cmd("close", id="a")
    if lab.D >= 0.01:
        lab.in_flight_burst("%s closed" % second, t_fin2, 2 * lab.D + 0.1)
    lab.settle()
    lab.snapshot("%s TIME-WAIT" % first, {first: {"TIME-WAIT": 1}})
    if not expire:
        time.sleep(1.5)
        lab.snapshot("%s TIME-WAIT (+%.0f s)" % (first, time.time() - t_fin2), {first: {"TIME-WAIT": 1}})
        return
    lab.sleep_until(t_fin2 + 58)
    lab.snapshot("%s TIME-WAIT at +58 s" % first, {first: {"TIME-WAIT": 1}})
    last, gone = lab.poll_until(lambda: lab.count(first, "TIME-WAIT") == 0, t_fin2 + 80)
    lab.measured["time_wait_gone_after_close_s"] = [round(last - t_fin2, 2), round(gone - t_fin2, 2) if gone else None]
    lab.sleep_until(max(t_fin2 + 65, (gone or 0) + 2))
    lab.snapshot("%s TIME-WAIT expired" % first, {})


@mscenario("normal_close_client", grid(), long=True)
def m_normal_close_client(lab):
    lab.description = ("Data both ways; the client closes first (client FIN-WAIT-2 / server CLOSE-WAIT), the "
                       "server reads EOF and closes; client TIME-WAIT until the kernel's timer removes it. No drops.")
    _normal_close(lab, "client")


@mscenario("normal_close_server", grid(), long=True)
def m_normal_close_server(lab):
    lab.description = ("Mirror image: the server closes first, the client closes ~1 s later; server TIME-WAIT "
                       "until it expires. No drops.")
    _normal_close(lab, "server")


@mscenario("close_wait_leak", grid())
def m_close_wait_leak(lab):
    lab.description = ("Short variant: the client closes, the server reads EOF and never closes: client (orphan) "
                       "FIN-WAIT-2, server CLOSE-WAIT, for ~4 s (the 60 s fin_timeout is covered by "
                       "captures/kernel/close_wait_leak). No drops.")
    c, s = _setup_pair(lab)
    _established(lab, c, s)
    t0 = time.time()
    c.cmd("close", id="a")
    r = s.cmd("recv", id="a", n=1, timeout=2)
    assert r["eof"]["a"] is True, r
    lab.quiet_snaps("client FIN-WAIT-2, server CLOSE-WAIT", t0 + 4.5,
                    {"client": {"FIN-WAIT-2": 1}, "server": {"CLOSE-WAIT": 1}}, every=1.2, t0=t0)


@mscenario("simultaneous_close", grid())
def m_simultaneous_close(lab):
    lab.description = ("Both close at once while the forwarder drops every FIN (both directions, after the tap: "
                       "seen, not delivered): both FIN-WAIT-1, retransmitting. The client->server FIN drop is "
                       "removed at +2.5 s: the server gets the client's next FIN (CLOSING) and ACKs it (client "
                       "FIN-WAIT-2). The server->client drop is removed at +6.5 s: the client gets the server's "
                       "next FIN (TIME-WAIT) and ACKs it (server TIME-WAIT).")
    c, s = _setup_pair(lab)
    _established(lab, c, s)
    lab.drop("finA", "every server->client FIN", where="after", dir="s2c", flags_all=FIN)
    lab.drop("finB", "every client->server FIN", where="after", dir="c2s", flags_all=FIN)
    t0 = time.time()
    c.post("close", id="a")
    s.post("close", id="a")
    c.result()
    s.result()
    # removal times fall just before a retransmission of the other side's FIN for every delay:
    # RTO ~0.2 s (0.1 ms), ~0.24 s + TLP (20 ms), ~0.5 s (150 ms), doubling each time
    lab.quiet_snaps("both FIN-WAIT-1", t0 + 2.5, {"client": {"FIN-WAIT-1": 1}, "server": {"FIN-WAIT-1": 1}},
                    every=0.6, max_n=2, t0=t0)
    lab.undrop("finB")
    lab.log("client->server FIN drop removed")
    lab.quiet_snaps("after the c->s FIN drop is removed", t0 + 6.5, None, max_n=3, t0=t0)
    lab.undrop("finA")
    lab.log("server->client FIN drop removed")
    lab.quiet_snaps("after both drops are removed", t0 + 18.0, None, max_n=4, every=1.5, t0=t0)


def _rst(lab, who, cid):
    c, s = lab.agents[0], lab.agents[1]
    ag = {"client": c, "server": s}
    lab.connect1(c, s, cid)
    lab.exchange(c, s, cid)
    lab.settle()
    lab.snapshot("%s established" % cid, {"client": {"ESTAB": 1}, "server": {"ESTAB": 1}})
    time.sleep(0.4)
    ag[who].cmd("close", id=cid, linger0=True)
    lab.settle()
    lab.snapshot("after %s RST (%s)" % (who, cid), {})
    ag["server" if who == "client" else "client"].cmd("close", id=cid)
    time.sleep(0.4)


@mscenario("rst_abort", grid())
def m_rst_abort(lab):
    lab.description = ("Connection a: data both ways, the client closes with SO_LINGER {1,0} (RST). Connection "
                       "b: the same, the server aborts. No drops.")
    _setup_pair(lab)
    _rst(lab, "client", "a")
    _rst(lab, "server", "b")


@mscenario("refused", grid())
def m_refused(lab):
    lab.description = ("The client connects to port 9 where nothing listens: RST/ACK, ECONNREFUSED. No drops.")
    c, s = _setup_pair(lab)
    time.sleep(0.4)
    lab.snapshot("before", {})
    time.sleep(0.4)
    r = c.cmd("connect", id="a", host=lab.saddr, port=9, wait=3)
    lab.measured["connect_error"] = r["results"]["a"].get("err")
    lab.settle()
    lab.snapshot("after refused connect", {})
    c.cmd("close", id="a")
    time.sleep(0.4)


@mscenario("syn_dropped", grid())
def m_syn_dropped(lab):
    lab.description = ("Every client SYN to 8080 is dropped after the tap (seen, never delivered). The "
                       "application's connect() has its own 4.5 s timeout: it closes the SYN-SENT socket after "
                       "the kernel's 1st-4th retransmissions, long before the kernel would give up (no packet "
                       "marks that moment).")
    c, s = _setup_pair(lab)
    lab.drop("syn", "every client SYN", where="after", dir="c2s", flags_all=SYN, flags_none=ACK)
    time.sleep(0.4)
    lab.snapshot("before", {})
    time.sleep(0.4)
    t0 = time.time()
    c.cmd("connect", id="a", host=lab.saddr, port=PORT, wait=0)
    lab.quiet_snaps("SYN-SENT", t0 + 4.5, {"client": {"SYN-SENT": 1}}, every=0.8, t0=t0)
    c.cmd("close", id="a")
    lab.measured["app_gave_up_after_s"] = round(time.time() - t0, 3)
    lab.quiet_snaps("after the application gave up", time.time() + 2.5, {}, max_n=2, t0=t0)


def _second_fin_trouble(lab, kind):
    """Client closes first; the server's FIN (kind='fin') or the client's ACK of it (kind='ack') is lost
    three times, then the close completes."""
    c, s = _setup_pair(lab)
    _established(lab, c, s)
    c.cmd("close", id="a")
    lab.settle()
    lab.snapshot("client FIN-WAIT-2, server CLOSE-WAIT", {"client": {"FIN-WAIT-2": 1}, "server": {"CLOSE-WAIT": 1}})
    time.sleep(0.4)
    r = s.cmd("recv", id="a", n=1, timeout=2)
    assert r["eof"]["a"] is True, r
    if kind == "ack":
        lab.drop("ack", "the first 4 client ACKs of the server's FIN", dir="c2s", acks_fin=True, count=4)
    else:
        lab.drop("fin", "the first 4 transmissions of the server's FIN", dir="s2c", flags_all=FIN, count=4)
    t0 = time.time()
    s.cmd("close", id="a")
    # 4 losses last until the 4th retransmission (TLP, then RTO backoff): ~3-4 s at 0.1/20 ms, ~8 s at 150 ms
    lab.quiet_snaps("after the server's close, while its FIN or the ACK is lost", t0 + 10.0, None,
                    every=0.9, max_n=5, t0=t0)
    lab.undrop(kind)
    lab.quiet_snaps("after recovery", t0 + 15.0, {"client": {"TIME-WAIT": 1}}, max_n=2, every=1.5, t0=t0)


@mscenario("last_ack_ack_lost", grid(losses=("before", "after")))
def m_last_ack_ack_lost(lab):
    lab.description = ("Client closes first; the server closes; the client's ACK of the server's FIN is lost 4 "
                       "times (each re-ACK of a retransmitted FIN too), before or after the tap: server LAST-ACK "
                       "retransmitting its FIN (TLP, then RTO backoff), client TIME-WAIT; the 5th ACK gets through "
                       "(server gone). The rule is removed at +10 s in any case.")
    _second_fin_trouble(lab, "ack")


@mscenario("fin_lost", grid(losses=("before", "after")))
def m_fin_lost(lab):
    lab.description = ("Client closes first; the server closes; its FIN is lost 4 times (before or after the "
                       "tap): client FIN-WAIT-2, server LAST-ACK retransmitting; the 5th copy arrives: client "
                       "TIME-WAIT, server gone.")
    _second_fin_trouble(lab, "fin")


@mscenario("fin_lost_client", grid(losses=("before", "after")))
def m_fin_lost_client(lab):
    lab.description = ("Recorded after rule 5 of tcpfsm/fsm/machine.py was written from fin_lost and zero_window, "
                       "to test it on what it was not fitted to: the client closes first and its FIN is lost "
                       "twice (before or after the tap): client FIN-WAIT-1 retransmitting, server ESTAB; the "
                       "3rd copy arrives: client FIN-WAIT-2, server CLOSE-WAIT; then the server closes.")
    c, s = _setup_pair(lab)
    _established(lab, c, s)
    lab.drop("fin", "the first 2 transmissions of the client's FIN", dir="c2s", flags_all=FIN, count=2)
    t0 = time.time()
    c.cmd("close", id="a")
    # 2 losses last until the 2nd retransmission (TLP, then RTO): ~1 s at 0.1/20 ms, ~3 s at 150 ms
    lab.quiet_snaps("after the client's close, while its FIN is lost", t0 + 6.0, None, every=0.7, max_n=4, t0=t0)
    lab.undrop("fin")
    lab.quiet_snaps("after recovery", t0 + 9.0, {"client": {"FIN-WAIT-2": 1}, "server": {"CLOSE-WAIT": 1}},
                    max_n=2, every=1.0, t0=t0)
    s.cmd("close", id="a")
    lab.settle()
    lab.snapshot("both closed", {"client": {"TIME-WAIT": 1}})


@mscenario("fin_wait_1", grid())
def m_fin_wait_1(lab):
    lab.description = ("After an exchange the forwarder drops everything from the server after the tap (peer "
                       "unreachable). The server sends 300 bytes and closes: server FIN-WAIT-1 retransmitting "
                       "data+FIN (seen, never delivered, never ACKed); the client stays ESTAB.")
    c, s = _setup_pair(lab)
    _established(lab, c, s)
    lab.drop("s2c", "everything from the server", where="after", dir="s2c")
    time.sleep(0.3)
    t0 = time.time()
    s.cmd("send", id="a", n=300)
    s.cmd("close", id="a")
    lab.quiet_snaps("server FIN-WAIT-1, client ESTAB", t0 + 12.0,
                    {"client": {"ESTAB": 1}, "server": {"FIN-WAIT-1": 1}}, every=1.5, t0=t0)


def _accept_overflow(lab, abort):
    lab.sysctl("server", "net.ipv4.tcp_abort_on_overflow", abort)
    lab.sysctl("server", "net.ipv4.tcp_syncookies", 1)
    c, s = _setup_pair(lab, backlog=2)
    # a and b complete and sit in the accept queue (2 of max 2: not yet "full", which is > backlog)
    for cid in ("a", "b"):
        r = c.cmd("connect", id=cid, host=lab.saddr, port=PORT, wait=3)
        assert r["results"][cid]["connected"], r
    lab.settle()
    lab.snapshot("a, b queued, not accepted", None)
    time.sleep(0.4)
    t0 = time.time()
    # c, d, e at once: c's ACK fills the queue; d (a real request) overflows; e got a SYN cookie
    r = c.cmd("connect", ids=["c", "d", "e"], host=lab.saddr, port=PORT, wait=3)
    lab.measured["burst_connect"] = {k: v.get("err") or ("connected" if v.get("connected") else "no")
                                     for k, v in r["results"].items()}
    lab.quiet_snaps("queue overflowed", t0 + 5.0, None, every=1.5, max_n=2, t0=t0)
    acc = s.cmd("accept_ready", lid="L", ids=["s%d" % i for i in range(6)], timeout=0.5)["peers"]
    lab.measured["accepted_first_drain"] = len(acc)
    lab.quiet_snaps("after accept() drained the queue", t0 + 12.0, None, every=2.0, max_n=3, t0=t0)
    live = [k for k in ("a", "b", "c", "d", "e") if c.cmd("status", id=k)["status"][k]["connected"]]
    if live:
        c.cmd("send", ids=live, n=10)
    lab.quiet_snaps("after every client sent 10 bytes", t0 + 17.0, None, every=2.0, max_n=2, t0=t0)
    acc2 = s.cmd("accept_ready", lid="L", ids=["t%d" % i for i in range(6)], timeout=0.5)["peers"]
    lab.measured["accepted_second_drain"] = len(acc2)


@mscenario("accept_overflow_abort0", grid())
def m_accept_overflow_abort0(lab):
    lab.description = ("Listener backlog 2, no accept(): a, b complete and queue. c, d, e connect at once "
                       "(tcp_syncookies=1, tcp_abort_on_overflow=0): c's ACK fills the accept queue, d's ACK "
                       "(a real request) is dropped -> client ESTAB, server SYN-RECV retransmitting SYN+ACK; e got "
                       "a SYN cookie, its ACK is dropped -> client ESTAB, server nothing. At +5 s the server "
                       "accepts; at +12 s every client sends 10 bytes (e's data ACK carries a valid cookie).")
    _accept_overflow(lab, 0)


@mscenario("accept_overflow_abort1", grid())
def m_accept_overflow_abort1(lab):
    lab.description = ("As accept_overflow_abort0 with tcp_abort_on_overflow=1: the overflowing ACKs are "
                       "answered with RST (client sockets reset after having been ESTAB).")
    _accept_overflow(lab, 1)


@mscenario("keepalive_vanished", grid(delays=(20.0, 150.0), losses=("before", "after")))
def m_keepalive_vanished(lab):
    lab.description = ("ESTAB with data, then the client enables keepalive (idle 2 s, interval 2 s, 3 probes) and "
                       "the forwarder drops everything from the server (before or after the tap). The server "
                       "ACKs each probe (dropped); after 3 unanswered probes the client kernel gives up and "
                       "sends RST, which the server gets.")
    c, s = _setup_pair(lab)
    _established(lab, c, s)
    lab.drop("s2c", "everything from the server", dir="s2c")
    t0 = time.time()
    c.cmd("keepalive", id="a", idle=2, intvl=2, cnt=3)
    lab.quiet_snaps("keepalive probing", t0 + 8.5, None, every=1.2, max_n=4, t0=t0)
    lab.quiet_snaps("after the client gave up", t0 + 13.0, None, every=1.5, max_n=3, t0=t0)


def _zero_window(lab, close_at_once):
    """The server (SO_RCVBUF 4096) never reads; the client queues 60 kB and close()s, at once or after the
    window has been shut for a while; then the server reads everything and closes."""
    lab.snaplen = 96
    c, s = _setup_pair(lab, rcvbuf=4096)
    _established(lab, c, s)
    t0 = time.time()
    r = c.cmd("send_nb", id="a", n=60000)
    lab.measured["queued_bytes"] = r["sent"]["a"]
    if close_at_once:
        c.cmd("close", id="a")
        lab.quiet_snaps("client closed at once, FIN queued behind data, zero window", t0 + 7.0,
                        {"client": {"FIN-WAIT-1": 1}, "server": {"ESTAB": 1}}, every=1.0, max_n=4, t0=t0)
    else:
        lab.quiet_snaps("zero window, persist probes", t0 + 6.0, {"client": {"ESTAB": 1}, "server": {"ESTAB": 1}},
                        every=1.0, max_n=3, t0=t0)
        c.cmd("close", id="a")
        lab.quiet_snaps("client closed, FIN queued behind data", t0 + 10.0,
                        {"client": {"FIN-WAIT-1": 1}, "server": {"ESTAB": 1}}, every=1.0, max_n=2, t0=t0)
    r = s.cmd("recv", id="a", timeout=4 + 10 * lab.D)
    lab.measured["server_read"] = r["got"]["a"]
    lab.settle()
    lab.snapshot("server read everything", {"client": {"FIN-WAIT-2": 1}, "server": {"CLOSE-WAIT": 1}})
    time.sleep(0.4)
    s.cmd("close", id="a")
    lab.settle()
    lab.snapshot("both closed", {"client": {"TIME-WAIT": 1}})


@mscenario("zero_window", grid())
def m_zero_window(lab):
    lab.description = ("The server (SO_RCVBUF 4096, inherited from the listener) never reads; the client queues "
                       "60 kB: the server's window closes, the client sends zero-window probes (persist timer). "
                       "The client then close()s: FIN-WAIT-1 with its FIN still queued behind unsent data (no FIN "
                       "on the wire). The server then reads everything (EOF) and closes. No drops. snaplen 96.")
    _zero_window(lab, close_at_once=False)


@mscenario("zero_window_early_close", grid())
def m_zero_window_early_close(lab):
    lab.description = ("Recorded after rule 5 of tcpfsm/fsm/machine.py was written, to test it on what it was not "
                       "fitted to: as zero_window, but the client close()s right after queueing its 60 kB, before "
                       "the server's window closes: FIN-WAIT-1 through the whole stall, its FIN queued behind "
                       "unsent data. The server reads everything and closes. No drops. snaplen 96.")
    _zero_window(lab, close_at_once=True)


@mscenario("syn_cookies", grid(delays=(20.0,)))
def m_syn_cookies(lab):
    lab.description = ("tcp_syncookies=1, listener backlog 4. The forwarder injects 40 SYNs from spoofed sources "
                       "10.80.N.x (as if from the client side); the server routes 10.80.N.0/24 via the client, "
                       "which discards the SYN+ACKs. The first requests take SYN-RECV slots (their SYN+ACKs "
                       "are retransmitted); once the SYN queue is full the rest are answered with cookies "
                       "(no state, never retransmitted). A legitimate connection is made during the flood.")
    lab.sysctl("server", "net.ipv4.tcp_syncookies", 1)
    run(["ip", "-n", lab.sns, "route", "add", "10.80.%d.0/24" % lab.n, "via", lab.caddr])
    lab.notes.append("server has route 10.80.%d.0/24 via %s" % (lab.n, lab.caddr))
    c, s = _setup_pair(lab, backlog=4)
    time.sleep(0.4)
    lab.snapshot("before", {})
    time.sleep(0.4)
    r = lab.fwd.cmd("flood", n=40, prefix="10.80.%d" % lab.n, dst=lab.saddr, dport=PORT, smac=lab.cmac,
                    dmac=lab.smac, seed=lab.n, pace=0.002)
    t0 = r["t0"]
    lab.measured["flood_window"] = [round(r["t0"], 3), round(r["t1"], 3)]
    lab.quiet_snaps("flood answered", t0 + 2.8, None, every=0.6, max_n=2, t0=t0)
    rr = c.cmd("connect", id="legit", host=lab.saddr, port=PORT, wait=3)
    lab.measured["legit_connect"] = rr["results"]["legit"]
    lab.quiet_snaps("legit connection during the flood", t0 + 12.0, None, every=1.5, max_n=5, t0=t0)


@mscenario("fast_open", grid())
def m_fast_open(lab):
    lab.description = ("TCP Fast Open (tcp_fastopen=3 on both sides, listener TCP_FASTOPEN 16). Connection a: "
                       "sendto(MSG_FASTOPEN) without a cookie (SYN asks for one; data after the handshake), "
                       "exchange, client closes first. Connection b: SYN carries the cookie and 100 bytes; the "
                       "server accepts in SYN-RECV; exchange; server closes first. No drops.")
    for role in ("client", "server"):
        lab.sysctl(role, "net.ipv4.tcp_fastopen", 3)
    c, s = _setup_pair(lab, fastopen=16)
    for cid, first in (("a", "client"), ("b", "server")):
        c.cmd("tfo_send", id=cid, host=lab.saddr, port=PORT, n=100)
        s.cmd("accept", lid="L", id=cid)
        r = s.cmd("recv", id=cid, n=100, timeout=3)
        assert r["got"][cid] == 100, r
        s.cmd("send", id=cid, n=300)
        r = c.cmd("recv", id=cid, n=300, timeout=3)
        assert r["got"][cid] == 300, r
        lab.settle()
        lab.snapshot("%s established (fast open)" % cid, None)
        time.sleep(0.4)
        ag = {"client": c, "server": s}
        second = "server" if first == "client" else "client"
        ag[first].cmd("close", id=cid)
        r = ag[second].cmd("recv", id=cid, n=1, timeout=2)
        ag[second].cmd("close", id=cid)
        lab.settle()
        lab.snapshot("%s closed, %s closed first" % (cid, first), None)
        time.sleep(0.4)


@mscenario("close_in_flight", grid(delays=(150.0,)))
def m_close_in_flight(lab):
    lab.description = ("Timing: 4 connections one after another, each: connect, data both ways, then a close "
                       "(even ones client first, odd ones server first), the other side closes 1 s later. Every "
                       "connect and close is followed by an in-flight burst of ss (not in the test, see README); "
                       "quiet snapshots between. TIME-WAIT sockets pile up (no expiry wait). No drops.")
    c, s = _setup_pair(lab)
    ag = {"client": c, "server": s}
    # 150 ms only: at 20 ms a packet's flight is shorter than the two ss calls plus margins
    for k in range(4):
        cid = "k%d" % k
        first, second = ("client", "server") if k % 2 == 0 else ("server", "client")
        t = time.time()
        c.post("connect", id=cid, host=lab.saddr, port=PORT, wait=3)
        lab.in_flight_burst("%s connect" % cid, t, 2 * lab.D + 0.1)
        r = c.result()
        if not r["results"][cid].get("connected"):
            raise RuntimeError("connect failed: %r" % r)
        s.cmd("accept", lid="L", id=cid)
        lab.exchange(c, s, cid)
        lab.settle()
        lab.snapshot("%s established" % cid, None)
        time.sleep(0.4)
        t = time.time()
        ag[first].cmd("close", id=cid)
        lab.in_flight_burst("%s: %s closed" % (cid, first), t, 2 * lab.D + 0.1)
        lab.settle()
        lab.snapshot("%s: %s FIN-WAIT-2, %s CLOSE-WAIT" % (cid, first, second), None)
        time.sleep(0.4)
        r = ag[second].cmd("recv", id=cid, n=1, timeout=2)
        assert r["eof"][cid] is True, r
        t = time.time()
        ag[second].cmd("close", id=cid)
        lab.in_flight_burst("%s: %s closed" % (cid, second), t, 2 * lab.D + 0.1)
        lab.settle()
        lab.snapshot("%s: %s TIME-WAIT" % (cid, first), None)
        time.sleep(0.4)


def _one_sided(direction):
    cells = grid(delays=(20.0,), one_sided=direction, tap_dirs=[direction])
    return cells


@mscenario("one_sided_s2c", _one_sided("s2c"), long=True)
def m_one_sided_s2c(lab):
    lab.description = ("normal_close_client, but the tap writes only server->client frames (the client's SYN, "
                       "ACKs, data and FIN are never in the pcap).")
    _normal_close(lab, "client")


@mscenario("one_sided_c2s", _one_sided("c2s"), long=True)
def m_one_sided_c2s(lab):
    lab.description = ("normal_close_client, but the tap writes only client->server frames.")
    _normal_close(lab, "client")


CORE = ("normal_close_client", "normal_close_server", "close_wait_leak", "simultaneous_close", "rst_abort",
        "refused", "syn_dropped", "fin_wait_1")


# --------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------
def run_cell(n, name, cell, out, agent_path, fwd_path, results, sem):
    with sem:
        fn = MSCEN[name][0]
        lab = MatrixLab(n, name, cell, out, agent_path, fwd_path)
        t0 = time.time()
        try:
            lab.setup()
            fn(lab)
            lab.stop_capture()
            lab.finish()
            results[lab.base] = ("ok" if not lab.warnings else "warnings", lab.warnings, time.time() - t0)
        except Exception as ex:
            traceback.print_exc()
            lab.warnings.append("FAILED: %r" % ex)
            results[lab.base] = ("failed", lab.warnings, time.time() - t0)
            for p in (lab.pcap, lab.truth_path):       # a failed cell leaves nothing half-written
                if os.path.exists(p):
                    os.unlink(p)
        finally:
            lab.teardown()


def all_cells(only=None, pattern=None):
    out = []
    for name, (_, cells, long) in MSCEN.items():
        if only and name not in only:
            continue
        for cell in cells:
            if pattern and not fnmatch.fnmatch(cell_name(name, cell), pattern):
                continue
            out.append((long, name, cell))
    out.sort(key=lambda x: not x[0])       # the 70 s ones first, the short ones fill in around them
    return [(name, cell) for _, name, cell in out]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "matrix"))
    ap.add_argument("--only", nargs="+", metavar="SCENARIO")
    ap.add_argument("--cells", metavar="GLOB", help="only cells whose name matches (e.g. '*__middle__150ms*')")
    ap.add_argument("--jobs", type=int, default=20,
                    help="cells running at once (default 20: more makes the forwarders late on 2 cores)")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)
    cells = all_cells(args.only, args.cells)
    if args.list:
        for name, cell in cells:
            print(cell_name(name, cell))
        print("%d cells" % len(cells))
        return 0
    if os.geteuid() != 0:
        print("matrix.py needs root (network namespaces, AF_PACKET)", file=sys.stderr)
        return 2
    for tool in ("ip", "ss"):
        if not shutil.which(tool):
            print("missing tool: " + tool, file=sys.stderr)
            return 2
    if len(cells) > 250:
        print("too many cells for the 10.79.N.0/24 numbering", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, record._on_signal)
    signal.signal(signal.SIGINT, record._on_signal)
    record._TMPDIR = tempfile.mkdtemp(prefix="tcpfsm-matrix-")
    agent_path = os.path.join(record._TMPDIR, "agent.py")
    with open(agent_path, "w") as fh:
        fh.write(AGENT_SRC)
    fwd_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "matrix_fwd.py")
    results: dict = {}
    sem = threading.Semaphore(max(1, args.jobs))
    threads = []
    t_start = time.time()
    for i, (name, cell) in enumerate(cells, start=1):
        th = threading.Thread(target=run_cell, args=(i, name, cell, args.out, agent_path, fwd_path, results, sem),
                              daemon=True)
        th.start()
        threads.append(th)
        time.sleep(0.05)
    deadline = time.time() + 1800
    for th in threads:
        th.join(timeout=max(1, deadline - time.time()))
    cleanup()
    print("\n=== summary (%.0f s wall) ===" % (time.time() - t_start))
    rc = 0
    for name, cell in cells:
        base = cell_name(name, cell)
        st, warns, dur = results.get(base, ("did not finish", [], 0))
        print("%-58s %-10s %5.1f s" % (base, st, dur))
        for w in warns:
            print("    " + w)
        if st == "failed" or st == "did not finish":
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
