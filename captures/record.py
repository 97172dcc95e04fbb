#!/usr/bin/env python3
"""Kernel-truth recorder for tcpfsm.

Builds pairs of network namespaces (client / server joined by one veth),
drives real Linux TCP sockets through scripted scenarios, captures the wire
on the client's veth (inside the client namespace) with tcpdump, and takes
``ss -tanoH`` snapshots in both namespaces at quiet moments.  Each scenario
writes ``<out>/<scenario>.pcap`` and ``<out>/<scenario>.truth.json``.

Usage (root required)::

    python captures/record.py [--only NAME ...] [--out captures/kernel] [--list]

Scenarios are independent and run in parallel threads, each in its own
namespace pair ``tfc<N>-<pid>`` (client) / ``tfs<N>-<pid>`` (server) with
addresses 10.77.N.1 (client) and 10.77.N.2 (server).  All namespaces and
processes started here are removed again (by exact name / PID) on exit,
including on exceptions, SIGINT and SIGTERM.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter

PID = os.getpid()
PORT = 8080

# --------------------------------------------------------------------------
# socket agent: runs inside one namespace, obeys JSON commands on stdin
# --------------------------------------------------------------------------
AGENT_OPS = r'''
import errno, json, select, socket, struct, sys, time
socks = {}

def fam(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET

def fmt(a):
    if a is None:
        return None
    return ("[%s]:%d" % (a[0], a[1])) if ":" in a[0] else ("%s:%d" % (a[0], a[1]))

def local(s):
    try:
        return fmt(s.getsockname())
    except OSError:
        return None

def ids(c):
    return c["ids"] if "ids" in c else [c["id"]]

def do(c):
    op = c["op"]
    if op == "listen":
        s = socket.socket(fam(c["host"]), socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((c["host"], c["port"]))
        s.listen(c.get("backlog", 128))
        socks[c["id"]] = s
        return {"local": local(s)}
    if op == "accept":
        l = socks[c["lid"]]
        l.settimeout(c.get("timeout", 5))
        peers = {}
        for i in ids(c):
            conn, peer = l.accept()
            conn.settimeout(c.get("timeout", 5))
            socks[i] = conn
            peers[i] = fmt(peer)
        return {"peers": peers}
    if op == "connect":
        res = {}
        pend = []
        for i in ids(c):
            s = socket.socket(fam(c["host"]), socket.SOCK_STREAM)
            if c.get("reuse"):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if c.get("bind_port") is not None:
                s.bind((c["bind_host"], c["bind_port"]))
            s.setblocking(False)
            rc = s.connect_ex((c["host"], c["port"]))
            socks[i] = s
            res[i] = {"rc": errno.errorcode.get(rc, rc) if rc else 0, "local": local(s)}
            pend.append(i)
            if c.get("pace"):
                time.sleep(c["pace"])
        wait = c.get("wait", 5)
        if wait:
            end = time.time() + wait
            for i in pend:
                s = socks[i]
                select.select([], [s], [], max(0, end - time.time()))
                e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                res[i]["err"] = errno.errorcode.get(e, e) if e else None
                try:
                    s.getpeername()
                    res[i]["connected"] = True
                except OSError:
                    res[i]["connected"] = False
                s.settimeout(c.get("timeout", 5))
        return {"results": res}
    if op == "status":
        out = {}
        for i in ids(c):
            s = socks[i]
            e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            try:
                s.getpeername()
                conn = True
            except OSError:
                conn = False
            out[i] = {"err": errno.errorcode.get(e, e) if e else None, "connected": conn}
        return {"status": out}
    if op == "send":
        n = c["n"]
        for i in ids(c):
            s = socks[i]
            s.settimeout(c.get("timeout", 30))
            s.sendall(b"x" * n)
        return {}
    if op == "recv":
        # read until n bytes per socket, EOF, or timeout
        got, eof = {}, {}
        for i in ids(c):
            s = socks[i]
            want = c.get("n", 1 << 30)
            end = time.time() + c.get("timeout", 5)
            g = 0
            e = False
            while g < want:
                left = end - time.time()
                if left <= 0:
                    break
                s.settimeout(left)
                try:
                    b = s.recv(min(1 << 16, want - g))
                except socket.timeout:
                    break
                except ConnectionResetError:
                    e = "reset"
                    break
                if not b:
                    e = True
                    break
                g += len(b)
            got[i], eof[i] = g, e
        return {"got": got, "eof": eof}
    if op == "shutdown":
        how = {"wr": socket.SHUT_WR, "rd": socket.SHUT_RD, "rdwr": socket.SHUT_RDWR}[c.get("how", "wr")]
        for i in ids(c):
            socks[i].shutdown(how)
        return {}
    if op == "close":
        for i in ids(c):
            s = socks.pop(i)
            if c.get("linger0"):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        return {}
    if op == "local":
        return {"local": {i: local(socks[i]) for i in ids(c)}}
    if op == "ping":
        return {}
    raise ValueError("unknown op %r" % op)
'''

# The command loop is a separate string so that captures/matrix.py can put extra ops between the
# two halves (its agent redefines do() to add them) without copying the base ops.
AGENT_LOOP = r'''
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    c = json.loads(line)
    if c.get("op") == "quit":
        break
    try:
        r = do(c)
        r["ok"] = True
    except Exception as ex:
        r = {"ok": False, "error": repr(ex)}
    r["t"] = time.time()
    sys.stdout.write(json.dumps(r) + "\n")
    sys.stdout.flush()
'''
AGENT_SRC = AGENT_OPS + AGENT_LOOP

# --------------------------------------------------------------------------
# global bookkeeping for cleanup
# --------------------------------------------------------------------------
_LOCK = threading.Lock()
_NAMESPACES: list[str] = []   # exact names we created
_PROCS: list[subprocess.Popen] = []
_TMPDIR = None
_CLEANED = False


def _register_ns(name):
    with _LOCK:
        _NAMESPACES.append(name)


def _register_proc(p):
    with _LOCK:
        _PROCS.append(p)


def _kill_proc(p, sig=signal.SIGTERM, wait=3.0):
    if p.poll() is not None:
        return
    try:
        os.kill(p.pid, sig)
    except ProcessLookupError:
        return
    try:
        p.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass


def cleanup():
    global _CLEANED
    with _LOCK:
        if _CLEANED:
            return
        _CLEANED = True
        procs = list(_PROCS)
        names = list(_NAMESPACES)
    for p in procs:
        # tcpdump gets SIGINT so it flushes; everything else SIGTERM
        _kill_proc(p, signal.SIGINT if getattr(p, "_is_tcpdump", False) else signal.SIGTERM)
    for n in names:
        subprocess.run(["ip", "netns", "del", n], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if _TMPDIR and os.path.isdir(_TMPDIR):
        shutil.rmtree(_TMPDIR, ignore_errors=True)


def _on_signal(signum, frame):
    cleanup()
    sys.exit(128 + signum)


def run(cmd, check=True, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30, **kw)
    if check and r.returncode != 0:
        raise RuntimeError("command failed: %s\n%s" % (" ".join(cmd), r.stderr))
    return r


# --------------------------------------------------------------------------
# agent handle
# --------------------------------------------------------------------------
class Agent:
    def __init__(self, ns, role, agent_path):
        self.ns, self.role = ns, role
        self.p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-u", agent_path],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        _register_proc(self.p)
        self._buf = ""
        self.cmd("ping")

    def post(self, op, **kw):
        kw["op"] = op
        self.p.stdin.write(json.dumps(kw) + "\n")
        self.p.stdin.flush()

    def result(self, timeout=120.0):
        end = time.time() + timeout
        line = self.p.stdout.readline() if self._ready(end) else ""
        if not line:
            raise RuntimeError("%s agent: no reply" % self.role)
        r = json.loads(line)
        if not r.get("ok"):
            raise RuntimeError("%s agent error: %s" % (self.role, r.get("error")))
        return r

    def _ready(self, end):
        while time.time() < end:
            rl, _, _ = select.select([self.p.stdout], [], [], min(1.0, max(0.0, end - time.time())))
            if rl:
                return True
            if self.p.poll() is not None:
                return False
        return False

    def cmd(self, op, _timeout=120.0, **kw):
        self.post(op, **kw)
        return self.result(_timeout)

    def quit(self):
        if self.p.poll() is None:
            try:
                self.post("quit")
                self.p.wait(timeout=3)
            except Exception:
                pass
        _kill_proc(self.p)


# --------------------------------------------------------------------------
# ss parsing
# --------------------------------------------------------------------------
def parse_ss(text, ns, host):
    rows = []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 5:
            continue
        row = {"ns": ns, "host": host, "state": f[0], "local": f[3], "remote": f[4],
               "recv_q": int(f[1]), "send_q": int(f[2])}
        timer = [x for x in f[5:] if x.startswith("timer:")]
        if timer:
            row["timer"] = timer[0]
        rows.append(row)
    return rows


# --------------------------------------------------------------------------
# tiny pcap reader (no dependencies) for post-run checks / measurements
# --------------------------------------------------------------------------
def read_pcap_tcp(path):
    pkts = []
    with open(path, "rb") as fh:
        gh = fh.read(24)
        if len(gh) < 24:
            return pkts
        magic = struct.unpack("<I", gh[:4])[0]
        if magic in (0xa1b2c3d4, 0xa1b23c4d):
            e = "<"
        else:
            e = ">"
            magic = struct.unpack(">I", gh[:4])[0]
        nano = magic == 0xa1b23c4d
        linktype = struct.unpack(e + "I", gh[20:24])[0]
        while True:
            rh = fh.read(16)
            if len(rh) < 16:
                break
            sec, frac, incl, _orig = struct.unpack(e + "IIII", rh)
            data = fh.read(incl)
            ts = sec + frac / (1e9 if nano else 1e6)
            off = 14 if linktype == 1 else 16 if linktype == 113 else 0
            if linktype == 1:
                etype = struct.unpack("!H", data[12:14])[0]
            elif linktype == 113:
                etype = struct.unpack("!H", data[14:16])[0]
            else:
                continue
            if etype == 0x0800:
                ip = data[off:]
                if len(ip) < 20 or ip[9] != 6:
                    continue
                ihl = (ip[0] & 15) * 4
                tot = struct.unpack("!H", ip[2:4])[0]
                src = ".".join(str(b) for b in ip[12:16])
                dst = ".".join(str(b) for b in ip[16:20])
                tcp = ip[ihl:]
                iplen = tot - ihl
            elif etype == 0x86DD:
                ip = data[off:]
                if len(ip) < 40 or ip[6] != 6:
                    continue
                import ipaddress
                src = str(ipaddress.IPv6Address(ip[8:24]))
                dst = str(ipaddress.IPv6Address(ip[24:40]))
                tcp = ip[40:]
                iplen = struct.unpack("!H", ip[4:6])[0]
            else:
                continue
            if len(tcp) < 14:
                continue
            sp, dp, seq, ack = struct.unpack("!HHII", tcp[:12])
            doff = (tcp[12] >> 4) * 4
            flags = tcp[13]
            pkts.append({"ts": ts, "src": src, "dst": dst, "sport": sp, "dport": dp, "seq": seq,
                         "ack": ack, "flags": flags, "len": max(0, iplen - doff)})
    return pkts


FIN, SYN, RST, PSH, ACK = 1, 2, 4, 8, 16


def dump_truth(truth):
    """Pretty JSON, but one line per socket row (the pile scenarios have hundreds)."""
    rows = {}
    snaps = []
    for snap in truth["snapshots"]:
        snap = dict(snap)
        socks = []
        for row in snap["sockets"]:
            key = "@@ROW%d@@" % len(rows)
            rows['"%s"' % key] = json.dumps(row)
            socks.append(key)
        snap["sockets"] = socks
        snaps.append(snap)
    text = json.dumps(dict(truth, snapshots=snaps), indent=1)
    for k, v in rows.items():
        text = text.replace(k, v, 1)
    return text + "\n"


# --------------------------------------------------------------------------
# the lab: one namespace pair
# --------------------------------------------------------------------------
class Lab:
    def __init__(self, n, scenario, out, agent_path, v6=False):
        self.n, self.scenario, self.out, self.agent_path = n, scenario, out, agent_path
        self.cns, self.sns = "tfc%d-%d" % (n, PID), "tfs%d-%d" % (n, PID)
        self.cif, self.sif = "vc%d" % n, "vs%d" % n
        self.v6 = v6
        if v6:
            self.caddr, self.saddr = "fd77:%x::1" % n, "fd77:%x::2" % n
        else:
            self.caddr, self.saddr = "10.77.%d.1" % n, "10.77.%d.2" % n
        self.pcap = os.path.join(out, scenario + ".pcap")
        self.truth_path = os.path.join(out, scenario + ".truth.json")
        self.snapshots = []
        self.drops = []
        self.sysctls = {"client": {}, "server": {}}
        self.measured = {}
        self.notes = []
        self.warnings = []
        self.description = ""
        self.agents = []
        self.tcpdump = None
        self.snaplen = 128

    # -- helpers ---------------------------------------------------------
    def ns(self, role):
        return self.cns if role == "client" else self.sns

    def host(self, role):
        return self.caddr if role == "client" else self.saddr

    def ep(self, role, port):
        h = self.host(role)
        return ("[%s]:%d" % (h, port)) if self.v6 else ("%s:%d" % (h, port))

    def sysctl(self, role, key, val, record=True):
        run(["ip", "netns", "exec", self.ns(role), "sysctl", "-qw", "%s=%s" % (key, val)])
        if record:
            self.sysctls[role][key] = str(val)

    def ipt(self, role, *args):
        tool = "ip6tables" if self.v6 else "iptables"
        run(["ip", "netns", "exec", self.ns(role), tool, "-w", "5"] + list(args))

    def log(self, msg):
        print("[%s %.3f] %s" % (self.scenario, time.time(), msg), flush=True)

    # -- lifecycle -------------------------------------------------------
    def setup(self):
        for ns in (self.cns, self.sns):
            _register_ns(ns)
            run(["ip", "netns", "add", ns])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            if not self.v6:
                # keep IPv6 link-local / ND / MLD chatter out of the capture
                role = "client" if ns == self.cns else "server"
                for k in ("all", "default"):
                    self.sysctl(role, "net.ipv6.conf.%s.disable_ipv6" % k, 1)
        run(["ip", "link", "add", self.cif, "netns", self.cns, "type", "veth",
             "peer", "name", self.sif, "netns", self.sns])
        for role, ifc, addr in (("client", self.cif, self.caddr), ("server", self.sif, self.saddr)):
            ns = self.ns(role)
            # no ethtool here: gso_max_segs=1 makes TCP build one-MSS skbs, i.e. no TSO/GSO
            # super-segments on the wire tcpdump sees
            run(["ip", "-n", ns, "link", "set", ifc, "gso_max_segs", "1"])
            if self.v6:
                run(["ip", "-n", ns, "addr", "add", addr + "/64", "dev", ifc, "nodad"])
            else:
                run(["ip", "-n", ns, "addr", "add", addr + "/24", "dev", ifc])
            run(["ip", "-n", ns, "link", "set", ifc, "up"])

    def start_capture(self, snaplen=128, filt=None):
        self.snaplen = snaplen
        if os.path.exists(self.pcap):
            os.unlink(self.pcap)
        cmd = ["ip", "netns", "exec", self.cns, "tcpdump", "-i", self.cif, "-s", str(snaplen),
               "-U", "-n", "-w", self.pcap]
        if filt:
            cmd += filt.split()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        p._is_tcpdump = True
        _register_proc(p)
        self.tcpdump = p
        # wait until tcpdump is really listening
        end = time.time() + 10
        line = ""
        while time.time() < end:
            rl, _, _ = select.select([p.stderr], [], [], 0.5)
            if rl:
                line = p.stderr.readline()
                if "listening on" in line:
                    break
            if p.poll() is not None:
                raise RuntimeError("tcpdump died: " + line)
        time.sleep(0.3)

    def stop_capture(self):
        p = self.tcpdump
        if p is None:
            return
        time.sleep(0.3)
        if p.poll() is None:
            os.kill(p.pid, signal.SIGINT)
            try:
                _, err = p.communicate(timeout=10)
                for ln in err.splitlines():
                    if "dropped by kernel" in ln and not ln.startswith("0 "):
                        self.warnings.append("tcpdump: " + ln.strip())
            except subprocess.TimeoutExpired:
                _kill_proc(p, signal.SIGKILL)
        self.tcpdump = None

    def agent(self, role):
        a = Agent(self.ns(role), role, self.agent_path)
        self.agents.append(a)
        return a

    def teardown(self):
        # capture first (so nothing from the teardown reaches the pcap), then agents, then namespaces
        try:
            self.stop_capture()
        finally:
            for a in self.agents:
                try:
                    a.quit()
                except Exception:
                    pass
            for ns in (self.cns, self.sns):
                subprocess.run(["ip", "netns", "del", ns], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                with _LOCK:
                    if ns in _NAMESPACES:
                        _NAMESPACES.remove(ns)

    # -- truth -----------------------------------------------------------
    def ss(self, role):
        r = run(["ip", "netns", "exec", self.ns(role), "ss", "-tanoH"])
        return parse_ss(r.stdout, role, self.host(role))

    def snapshot(self, label, expect=None):
        """expect: {"client": {"STATE": count}, "server": {...}} for non-LISTEN sockets."""
        c = self.ss("client")
        t = time.time()
        s = self.ss("server")
        snap = {"t": round(t, 6), "label": label, "sockets": c + s}
        self.snapshots.append(snap)
        counts = {r: dict(Counter(x["state"] for x in rows if x["state"] != "LISTEN"))
                  for r, rows in (("client", c), ("server", s))}
        self.log("snapshot %-45s client=%s server=%s" % (repr(label), counts["client"], counts["server"]))
        if expect is not None:
            for role in ("client", "server"):
                want = {k: v for k, v in expect.get(role, {}).items() if v}
                if counts[role] != want:
                    w = "snapshot %r: %s expected %s, kernel shows %s" % (label, role, want, counts[role])
                    self.warnings.append(w)
                    self.log("WARNING " + w)
        return snap

    def count(self, role, state, port=None):
        rows = self.ss(role)
        return sum(1 for x in rows if x["state"] == state and
                   (port is None or x["local"].endswith(":%d" % port) or x["remote"].endswith(":%d" % port)))

    def poll_until(self, pred, deadline, interval=0.1):
        """Poll (ss only, no packets) until pred() is true; returns (last_false_t, first_true_t)."""
        last = time.time()
        while time.time() < deadline:
            if pred():
                return last, time.time()
            last = time.time()
            time.sleep(interval)
        return last, None

    def sleep_until(self, t):
        d = t - time.time()
        if d > 0:
            time.sleep(d)

    def exchange(self, c, s, cid, sid=None, up=200, down=300):
        sid = sid or cid
        c.cmd("send", id=cid, n=up)
        r = s.cmd("recv", id=sid, n=up, timeout=3)
        assert r["got"][sid] == up, r
        s.cmd("send", id=sid, n=down)
        r = c.cmd("recv", id=cid, n=down, timeout=3)
        assert r["got"][cid] == down, r

    def connect1(self, c, s, cid, lid="L", **kw):
        r = c.cmd("connect", id=cid, host=self.saddr, port=kw.pop("port", PORT), wait=3, **kw)
        res = r["results"][cid]
        if not res.get("connected"):
            raise RuntimeError("connect failed: %r" % res)
        s.cmd("accept", lid=lid, id=cid)
        return res["local"]

    # -- post-processing -------------------------------------------------
    def finish(self):
        pk = read_pcap_tcp(self.pcap) if os.path.exists(self.pcap) else []
        ts = [p["ts"] for p in pk]
        for snap in self.snapshots:
            t = snap["t"]
            before = [x for x in ts if x <= t]
            after = [x for x in ts if x > t]
            gb = round(t - max(before), 3) if before else None
            ga = round(min(after) - t, 3) if after else None
            snap["quiet_before_s"], snap["quiet_after_s"] = gb, ga
            if (gb is not None and gb < 0.3) or (ga is not None and ga < 0.3):
                w = "snapshot %r not quiet: %s s after / %s s before a TCP packet" % (snap["label"], gb, ga)
                self.warnings.append(w)
                self.log("WARNING " + w)
        self.measured["tcp_packets_in_pcap"] = len(pk)
        truth = {
            "scenario": self.scenario,
            "description": self.description,
            "hosts": {"client": self.caddr, "server": self.saddr},
            "capture_point": "client veth (%s), inside the client namespace; tcpdump -s %d" % (self.cif, self.snaplen),
            "kernel": os.uname().release,
            "link": "veth pair, gso_max_segs=1 on both ends (no ethtool available; this disables TSO/GSO "
                    "super-segments); IPv6 disabled in IPv4-only namespaces to keep ND/MLD out of the pcap",
            "drops": self.drops,
            "sysctls_non_default": self.sysctls,
            "measured": self.measured,
            "notes": self.notes,
            "warnings": self.warnings,
            "snapshots": self.snapshots,
        }
        with open(self.truth_path, "w") as fh:
            fh.write(dump_truth(truth))
        return pk


# --------------------------------------------------------------------------
# scenarios
# --------------------------------------------------------------------------
SCENARIOS = {}


def scenario(n, name, v6=False):
    def deco(fn):
        SCENARIOS[name] = (n, fn, v6)
        return fn
    return deco


def _pkts_for(pk, sport=None, dport=None):
    return [p for p in pk if (sport is None or p["sport"] == sport) and (dport is None or p["dport"] == dport)]


def _normal_close(lab, first):
    """first = 'client' or 'server' closes first."""
    second = "server" if first == "client" else "client"
    c, s = lab.agent("client"), lab.agent("server")
    lab.start_capture()
    s.cmd("listen", id="L", host=lab.saddr, port=PORT)
    local = lab.connect1(c, s, "a")
    lab.exchange(c, s, "a")
    time.sleep(0.5)
    lab.snapshot("established", {"client": {"ESTAB": 1}, "server": {"ESTAB": 1}})
    time.sleep(0.5)
    ag = {"client": c, "server": s}
    t_fin1 = time.time()
    ag[first].cmd("close", id="a")
    time.sleep(0.5)
    lab.snapshot("%s FIN-WAIT-2, %s CLOSE-WAIT" % (first, second),
                 {first: {"FIN-WAIT-2": 1}, second: {"CLOSE-WAIT": 1}})
    time.sleep(0.5)
    r = ag[second].cmd("recv", id="a", n=1, timeout=2)
    assert r["eof"]["a"] is True, r
    t_fin2 = time.time()
    ag[second].cmd("close", id="a")
    time.sleep(1.0)
    lab.snapshot("%s TIME-WAIT" % first, {first: {"TIME-WAIT": 1}})
    lab.sleep_until(t_fin2 + 58)
    lab.snapshot("%s TIME-WAIT at +58 s" % first, {first: {"TIME-WAIT": 1}})
    last, gone = lab.poll_until(lambda: lab.count(first, "TIME-WAIT") == 0, t_fin2 + 80)
    lab.measured["time_wait_last_seen_s"] = round(last - t_fin2, 2)
    lab.measured["time_wait_gone_s"] = round(gone - t_fin2, 2) if gone else None
    lab.sleep_until(max(t_fin2 + 63, (gone or 0) + 2))
    lab.snapshot("%s TIME-WAIT expired" % first, {})
    lab.stop_capture()
    pk = read_pcap_tcp(lab.pcap)
    port = int(local.rsplit(":", 1)[1])
    # ack delay for each FIN
    fins = [p for p in pk if p["flags"] & FIN]
    delays = []
    for f in fins:
        end = (f["seq"] + f["len"] + 1) & 0xffffffff
        acks = [p for p in pk if p["ts"] >= f["ts"] and p["src"] == f["dst"] and p["ack"] == end and p["flags"] & ACK]
        if acks:
            delays.append(round((acks[0]["ts"] - f["ts"]) * 1000, 2))
    lab.measured["fin_ack_delay_ms"] = delays
    fin2 = [f for f in fins if f["src"] == lab.host(second)]
    if fin2 and gone:
        lab.measured["time_wait_from_fin_s"] = [round(last - fin2[0]["ts"], 2), round(gone - fin2[0]["ts"], 2)]
    lab.measured["client_port"] = port


@scenario(1, "normal_close_client")
def sc_normal_close_client(lab):
    lab.description = ("Client and server exchange data; the client closes first (FIN-WAIT-2 while the server "
                       "holds CLOSE-WAIT for ~1 s), then the server reads EOF and closes; the client sits in "
                       "TIME-WAIT until the kernel's TIME-WAIT timer removes it. No drops.")
    _normal_close(lab, "client")


@scenario(2, "normal_close_server")
def sc_normal_close_server(lab):
    lab.description = ("Server closes first (server FIN-WAIT-2 / client CLOSE-WAIT for ~1 s), then the client "
                       "closes; the server sits in TIME-WAIT until it expires. No drops.")
    _normal_close(lab, "server")


@scenario(3, "close_wait_leak")
def sc_close_wait_leak(lab):
    lab.description = ("Client closes; the server application never closes its socket: server CLOSE-WAIT for the "
                       "whole capture, client (orphaned, close()d) FIN-WAIT-2 until tcp_fin_timeout (60 s) "
                       "removes it silently. No drops.")
    c, s = lab.agent("client"), lab.agent("server")
    lab.start_capture()
    s.cmd("listen", id="L", host=lab.saddr, port=PORT)
    lab.connect1(c, s, "a")
    lab.exchange(c, s, "a")
    time.sleep(0.5)
    lab.snapshot("established", {"client": {"ESTAB": 1}, "server": {"ESTAB": 1}})
    time.sleep(0.5)
    t0 = time.time()
    c.cmd("close", id="a")
    time.sleep(1.0)
    lab.snapshot("client FIN-WAIT-2, server CLOSE-WAIT", {"client": {"FIN-WAIT-2": 1}, "server": {"CLOSE-WAIT": 1}})
    r = s.cmd("recv", id="a", n=1, timeout=1)   # server sees EOF but does not close
    assert r["eof"]["a"] is True, r
    lab.sleep_until(t0 + 30)
    lab.snapshot("+30 s: still FIN-WAIT-2 / CLOSE-WAIT", {"client": {"FIN-WAIT-2": 1}, "server": {"CLOSE-WAIT": 1}})
    lab.sleep_until(t0 + 57)
    lab.snapshot("+57 s: still FIN-WAIT-2 / CLOSE-WAIT", {"client": {"FIN-WAIT-2": 1}, "server": {"CLOSE-WAIT": 1}})
    last, gone = lab.poll_until(lambda: lab.count("client", "FIN-WAIT-2") == 0, t0 + 80)
    lab.measured["fin_wait_2_orphan_last_seen_s"] = round(last - t0, 2)
    lab.measured["fin_wait_2_orphan_gone_s"] = round(gone - t0, 2) if gone else None
    lab.sleep_until(max(t0 + 63, (gone or 0) + 2))
    lab.snapshot("client FIN-WAIT-2 expired, server still CLOSE-WAIT", {"server": {"CLOSE-WAIT": 1}})
    time.sleep(3)
    lab.snapshot("end: server CLOSE-WAIT leak", {"server": {"CLOSE-WAIT": 1}})
    lab.notes.append("times in measured are relative to the client's close() call (its FIN is ACKed < 5 ms later)")


@scenario(4, "half_close")
def sc_half_close(lab):
    lab.description = ("Client shutdown(SHUT_WR) (not close): client FIN-WAIT-2 (not orphaned, so no timeout), "
                       "server CLOSE-WAIT keeps sending 4 x 1000 bytes 0.8 s apart, the client reads them; then the "
                       "server closes -> client TIME-WAIT. No drops.")
    c, s = lab.agent("client"), lab.agent("server")
    lab.start_capture()
    s.cmd("listen", id="L", host=lab.saddr, port=PORT)
    lab.connect1(c, s, "a")
    lab.exchange(c, s, "a")
    time.sleep(0.5)
    lab.snapshot("established", {"client": {"ESTAB": 1}, "server": {"ESTAB": 1}})
    time.sleep(0.5)
    c.cmd("shutdown", id="a", how="wr")
    r = s.cmd("recv", id="a", n=1, timeout=2)
    assert r["eof"]["a"] is True, r
    time.sleep(0.5)
    lab.snapshot("after client SHUT_WR", {"client": {"FIN-WAIT-2": 1}, "server": {"CLOSE-WAIT": 1}})
    time.sleep(0.5)
    for i in range(4):
        t = time.time()
        s.cmd("send", id="a", n=1000)
        r = c.cmd("recv", id="a", n=1000, timeout=2)
        assert r["got"]["a"] == 1000, r
        if i in (1, 3):
            lab.sleep_until(t + 0.4)
            lab.snapshot("data flowing in half-closed connection (%d sends)" % (i + 1),
                         {"client": {"FIN-WAIT-2": 1}, "server": {"CLOSE-WAIT": 1}})
        lab.sleep_until(t + 0.8)
    s.cmd("close", id="a")
    r = c.cmd("recv", id="a", n=1, timeout=2)
    assert r["eof"]["a"] is True, r
    time.sleep(0.7)
    lab.snapshot("after server close", {"client": {"TIME-WAIT": 1}})
    c.cmd("close", id="a")      # socket already CLOSED inside the kernel: no packet
    time.sleep(0.7)
    lab.snapshot("after client app closes its fd", {"client": {"TIME-WAIT": 1}})


@scenario(5, "rst_abort")
def sc_rst_abort(lab):
    lab.description = ("Connection a: data both ways, then the client closes with SO_LINGER {1,0} -> RST; both "
                       "sides gone. Connection b: data both ways, then the server aborts the same way. No drops.")
    c, s = lab.agent("client"), lab.agent("server")
    lab.start_capture()
    s.cmd("listen", id="L", host=lab.saddr, port=PORT)
    lab.connect1(c, s, "a")
    lab.exchange(c, s, "a")
    time.sleep(0.5)
    lab.snapshot("a established", {"client": {"ESTAB": 1}, "server": {"ESTAB": 1}})
    time.sleep(0.5)
    c.cmd("close", id="a", linger0=True)
    time.sleep(0.5)
    lab.snapshot("after client RST (a)", {})
    s.cmd("close", id="a")
    time.sleep(0.5)
    lab.connect1(c, s, "b")
    lab.exchange(c, s, "b")
    time.sleep(0.5)
    lab.snapshot("b established", {"client": {"ESTAB": 1}, "server": {"ESTAB": 1}})
    time.sleep(0.5)
    s.cmd("close", id="b", linger0=True)
    time.sleep(0.5)
    lab.snapshot("after server RST (b)", {})
    c.cmd("close", id="b")
    time.sleep(0.5)
    lab.snapshot("end", {})


@scenario(6, "refused")
def sc_refused(lab):
    lab.description = ("The client connects to port 9 on the server where nothing listens: the server kernel "
                       "answers the SYN with RST/ACK, connect() fails with ECONNREFUSED. A listener on 8080 exists "
                       "but is not used. No drops.")
    c, s = lab.agent("client"), lab.agent("server")
    lab.start_capture()
    s.cmd("listen", id="L", host=lab.saddr, port=PORT)
    time.sleep(0.4)
    lab.snapshot("before", {})
    time.sleep(0.4)
    r = c.cmd("connect", id="a", host=lab.saddr, port=9, wait=3)
    lab.measured["connect_error"] = r["results"]["a"].get("err")
    time.sleep(0.5)
    lab.snapshot("after refused connect", {})
    c.cmd("close", id="a")
    time.sleep(0.4)


@scenario(7, "syn_dropped")
def sc_syn_dropped(lab):
    lab.description = ("The server's INPUT drops SYNs to port 8080 (the listener exists). The client sits in "
                       "SYN-SENT retransmitting its SYN (defaults tcp_syn_retries=6, tcp_syn_linear_timeouts=4; "
                       "see measured.syn_times_rel_first_s) until connect() fails with ETIMEDOUT (~135 s).")
    lab.drops.append("server INPUT: tcp dport 8080 with SYN set (and ACK clear) -> DROP; visible in pcap "
                     "(every SYN is seen, none is answered)")
    c, s = lab.agent("client"), lab.agent("server")
    s.cmd("listen", id="L", host=lab.saddr, port=PORT)
    lab.ipt("server", "-A", "INPUT", "-p", "tcp", "--dport", str(PORT), "--syn", "-j", "DROP")
    lab.start_capture()
    time.sleep(0.4)
    lab.snapshot("before", {})
    time.sleep(0.4)
    t0 = time.time()
    c.cmd("connect", id="a", host=lab.saddr, port=PORT, wait=0)
    # retries at ~1,2,3,4,6,10 s; give-up at ~18 s
    # measured on this kernel: SYN at 0, retries at ~1,2,3,4,5 (linear), then 7, 11, 19, 35, 69; give-up ~135 s
    for off in (9.0, 27.0, 52.0):
        lab.sleep_until(t0 + off)
        lab.snapshot("SYN-SENT (+%g s)" % off, {"client": {"SYN-SENT": 1}})
    last, gone = lab.poll_until(lambda: lab.count("client", "SYN-SENT") == 0, t0 + 200)
    st = c.cmd("status", id="a")["status"]["a"]
    lab.measured["connect_error"] = st["err"]
    lab.measured["syn_sent_last_seen_s"] = round(last - t0, 2)
    lab.measured["syn_sent_gone_s"] = round(gone - t0, 2) if gone else None
    lab.sleep_until((gone or time.time()) + 2.0)
    lab.snapshot("after the client gave up", {})
    c.cmd("close", id="a")
    time.sleep(0.5)
    lab.stop_capture()
    pk = read_pcap_tcp(lab.pcap)
    syns = [p for p in pk if p["flags"] & SYN and not p["flags"] & ACK]
    if syns:
        lab.measured["syn_times_rel_first_s"] = [round(p["ts"] - syns[0]["ts"], 3) for p in syns]
        if gone:
            lab.measured["give_up_after_first_syn_s"] = [round(last - syns[0]["ts"], 2), round(gone - syns[0]["ts"], 2)]


SPOOF_SRC = r'''
import random, sys, time
from scapy.all import Ether, IP, TCP, sendp, conf
conf.verb = 0
iface, smac, dmac, prefix, dst, dport, count, seed = sys.argv[1:9]
rnd = random.Random(int(seed))
pk = []
for i in range(int(count)):
    src = "%s.%d" % (prefix, 1 + i % 254)
    pk.append(Ether(src=smac, dst=dmac) / IP(src=src, dst=dst, ttl=64) /
              TCP(sport=rnd.randint(20000, 60000), dport=int(dport), flags="S",
                  seq=rnd.getrandbits(32), window=64240, options=[("MSS", 1460)]))
t0 = time.time()
sendp(pk, iface=iface, inter=0.001)
print("%.6f %.6f" % (t0, time.time()), flush=True)
'''


@scenario(8, "syn_flood")
def sc_syn_flood(lab):
    n_spoof = 300
    lab.description = ("SYN flood: from the client namespace scapy sends %d SYNs with spoofed sources "
                       "10.78.8.1-254 (random ports) to the server's listener on 8080 (backlog 1024, "
                       "tcp_syncookies=0). The server routes 10.78.8.0/24 via the client, so its SYN-ACKs and their "
                       "retransmissions (+1, +3, +7, +15, +31 s) appear in the pcap; the client namespace does not "
                       "own those addresses and does not forward, so it silently discards them. The SYN-RECV "
                       "pile expires ~63 s after the SYNs. A legitimate client connection is made during the flood "
                       "and completes (stays ESTAB)." % n_spoof)
    lab.drops.append("none by iptables; SYN-ACKs to 10.78.8.0/24 are discarded by the client namespace "
                     "(not local, ip_forward=0) after the capture point (visible)")
    lab.sysctl("server", "net.ipv4.tcp_syncookies", 0)
    run(["ip", "-n", lab.sns, "route", "add", "10.78.%d.0/24" % lab.n, "via", lab.caddr])
    lab.notes.append("server has route 10.78.%d.0/24 via %s" % (lab.n, lab.caddr))
    lab.notes.append("listen backlog 1024 so that 2*qlen <= backlog: otherwise reqsk_timer_handler prunes old "
                     "requests (synack retries cut to 2, silently, at the 3rd timeout ~+7 s) until qlen <= "
                     "backlog/2 - seen with backlog 512: 300 -> 256 SYN-RECV, not inferable from the wire")
    c, s = lab.agent("client"), lab.agent("server")
    s.cmd("listen", id="L", host=lab.saddr, port=PORT, backlog=1024)
    lab.start_capture()
    time.sleep(0.4)
    lab.snapshot("before", {})
    cmac = run(["ip", "netns", "exec", lab.cns, "cat", "/sys/class/net/%s/address" % lab.cif]).stdout.strip()
    smac = run(["ip", "netns", "exec", lab.sns, "cat", "/sys/class/net/%s/address" % lab.sif]).stdout.strip()
    spath = os.path.join(os.path.dirname(lab.agent_path), "spoof.py")
    with open(spath, "w") as fh:
        fh.write(SPOOF_SRC)
    p = subprocess.Popen(["ip", "netns", "exec", lab.cns, sys.executable, spath, lab.cif, cmac, smac,
                          "10.78.%d" % lab.n, lab.saddr, str(PORT), str(n_spoof), "8"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _register_proc(p)
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        _kill_proc(p, signal.SIGKILL)
        raise
    t_first, t_last = map(float, out.split())
    lab.measured["flood_send_window"] = [round(t_first, 3), round(t_last, 3)]
    lab.log("flood sent in %.2f s" % (t_last - t_first))
    t0 = t_first
    d = t_last - t_first
    n_rs = lambda: lab.count("server", "SYN-RECV")
    exp = {"server": {"SYN-RECV": n_spoof}}
    # SYN-ACK retransmissions in [t0+k, t_last+k] for k in 1,3,7,15,31; quiet gaps in between
    lab.sleep_until(t_last + 2.0 - d / 2)
    lab.snapshot("SYN-RECV pile after 1st SYN-ACK retransmission", exp)
    lab.sleep_until(t_last + 5.0 - d / 2)
    lab.snapshot("SYN-RECV pile after 2nd SYN-ACK retransmission", exp)
    lab.sleep_until(t_last + 9.5)
    t_legit = time.time()
    lab.connect1(c, s, "legit")
    lab.exchange(c, s, "legit")
    lab.measured["legit_connect_rel_first_spoof_s"] = round(t_legit - t0, 2)
    lab.sleep_until(t_last + 11.5)
    lab.snapshot("legit connection ESTAB amid the pile",
                 {"client": {"ESTAB": 1}, "server": {"SYN-RECV": n_spoof, "ESTAB": 1}})
    lab.sleep_until(t_last + 23)
    lab.snapshot("SYN-RECV pile after 4th SYN-ACK retransmission",
                 {"client": {"ESTAB": 1}, "server": {"SYN-RECV": n_spoof, "ESTAB": 1}})
    lab.sleep_until(t_last + 45)
    lab.snapshot("SYN-RECV pile after 5th (last) SYN-ACK retransmission",
                 {"client": {"ESTAB": 1}, "server": {"SYN-RECV": n_spoof, "ESTAB": 1}})
    first_drop = [None]

    def pred():
        k = n_rs()
        if k < n_spoof and first_drop[0] is None:
            first_drop[0] = time.time()
        return k == 0
    last, gone = lab.poll_until(pred, t0 + 90)
    lab.measured["syn_recv_first_expired_s"] = round(first_drop[0] - t0, 2) if first_drop[0] else None
    lab.measured["syn_recv_all_gone_s"] = round(gone - t0, 2) if gone else None
    lab.measured["syn_recv_all_gone_after_last_syn_s"] = round(gone - t_last, 2) if gone else None
    lab.sleep_until(max(t_last + 66, (gone or 0) + 2))
    lab.snapshot("SYN-RECV pile expired", {"client": {"ESTAB": 1}, "server": {"ESTAB": 1}})
    lab.stop_capture()
    pk = read_pcap_tcp(lab.pcap)
    pref = "10.78.%d." % lab.n
    syns = {}
    for x in pk:
        if x["dst"].startswith(pref) and x["flags"] & SYN and x["flags"] & ACK:
            syns.setdefault((x["dst"], x["dport"]), []).append(x["ts"])
    spoofed = {(x["src"], x["sport"]): x["ts"] for x in pk if x["src"].startswith(pref) and x["flags"] == SYN}
    rel = Counter()
    for k, tl in syns.items():
        if k in spoofed:
            for tt in tl:
                rel[round(tt - spoofed[k])] += 1
    lab.measured["spoofed_syns_seen"] = len(spoofed)
    lab.measured["synack_send_times_rel_syn_s_histogram"] = {str(k): v for k, v in sorted(rel.items())}


@scenario(9, "vanished_peer")
def sc_vanished_peer(lab):
    lab.description = ("Connection a is established with data; then the client 'pulls the cable' for a only "
                       "(client INPUT and OUTPUT drop that source port). The server sends 500 bytes and "
                       "retransmits them (RTO backoff) - visible in the pcap, never delivered, never ACKed. Both "
                       "kernels keep a in ESTAB. Meanwhile the client reconnects from a new port (b), which works.")
    c, s = lab.agent("client"), lab.agent("server")
    lab.start_capture()
    s.cmd("listen", id="L", host=lab.saddr, port=PORT)
    la = lab.connect1(c, s, "a")
    pa = la.rsplit(":", 1)[1]
    lab.drops.append("client INPUT: tcp dport %s -> DROP (visible: server retransmissions are seen)" % pa)
    lab.drops.append("client OUTPUT: tcp sport %s -> DROP (invisible; the client app sends nothing on a anyway)" % pa)
    lab.exchange(c, s, "a")
    time.sleep(0.5)
    lab.snapshot("a established", {"client": {"ESTAB": 1}, "server": {"ESTAB": 1}})
    time.sleep(0.5)
    lab.ipt("client", "-A", "INPUT", "-p", "tcp", "--dport", pa, "-j", "DROP")
    lab.ipt("client", "-A", "OUTPUT", "-p", "tcp", "--sport", pa, "-j", "DROP")
    time.sleep(0.5)
    t0 = time.time()
    s.cmd("send", id="a", n=500)
    # server retransmits at about +0.2, +0.6, +1.4, +3.0, +6.2, +12.6, +25.4 s
    lab.sleep_until(t0 + 2.2)
    lab.snapshot("a: server retransmitting, both still ESTAB", {"client": {"ESTAB": 1}, "server": {"ESTAB": 1}})
    lab.sleep_until(t0 + 4.0)
    lab.connect1(c, s, "b")
    lab.exchange(c, s, "b")
    lab.sleep_until(t0 + 5.3)
    lab.snapshot("old a fake-ESTAB, new b ESTAB", {"client": {"ESTAB": 2}, "server": {"ESTAB": 2}})
    lab.sleep_until(t0 + 9.5)
    lab.snapshot("+9.5 s: a fake-ESTAB, b ESTAB", {"client": {"ESTAB": 2}, "server": {"ESTAB": 2}})
    lab.sleep_until(t0 + 19)
    lab.snapshot("+19 s: a fake-ESTAB, b ESTAB", {"client": {"ESTAB": 2}, "server": {"ESTAB": 2}})
    lab.sleep_until(t0 + 21)


@scenario(10, "last_ack")
def sc_last_ack(lab):
    lab.description = ("Client closes first; the server reads EOF and closes, but its FIN is dropped at the "
                       "client's INPUT (seen in the pcap, never delivered), so the client never ACKs it: server "
                       "LAST-ACK retransmitting its FIN with exponential backoff, client (orphan) FIN-WAIT-2 "
                       "until tcp_fin_timeout removes it ~60 s after its FIN was ACKed; the server stays LAST-ACK.")
    lab.drops.append("client INPUT: tcp sport 8080 with FIN set -> DROP (visible: server FIN and its "
                     "retransmissions are seen, never delivered)")
    c, s = lab.agent("client"), lab.agent("server")
    lab.start_capture()
    s.cmd("listen", id="L", host=lab.saddr, port=PORT)
    lab.connect1(c, s, "a")
    lab.exchange(c, s, "a")
    lab.ipt("client", "-A", "INPUT", "-p", "tcp", "--sport", str(PORT), "--tcp-flags", "FIN", "FIN", "-j", "DROP")
    time.sleep(0.5)
    lab.snapshot("established", {"client": {"ESTAB": 1}, "server": {"ESTAB": 1}})
    time.sleep(0.5)
    tc = time.time()
    c.cmd("close", id="a")
    time.sleep(0.8)
    lab.snapshot("client FIN-WAIT-2, server CLOSE-WAIT", {"client": {"FIN-WAIT-2": 1}, "server": {"CLOSE-WAIT": 1}})
    r = s.cmd("recv", id="a", n=1, timeout=1)
    assert r["eof"]["a"] is True, r
    time.sleep(0.7)
    ts = time.time()
    s.cmd("close", id="a")
    # server FIN retransmissions at ~ +0.2, +0.6, +1.4, +3.0, +6.2, +12.6, +25.4, +51 s
    lab.sleep_until(ts + 2.2)
    lab.snapshot("server LAST-ACK, client FIN-WAIT-2 (+2.2 s)", {"client": {"FIN-WAIT-2": 1}, "server": {"LAST-ACK": 1}})
    lab.sleep_until(ts + 9.4)
    lab.snapshot("server LAST-ACK, client FIN-WAIT-2 (+9.4 s)", {"client": {"FIN-WAIT-2": 1}, "server": {"LAST-ACK": 1}})
    lab.sleep_until(ts + 38)
    lab.snapshot("server LAST-ACK, client FIN-WAIT-2 (+38 s)", {"client": {"FIN-WAIT-2": 1}, "server": {"LAST-ACK": 1}})
    last, gone = lab.poll_until(lambda: lab.count("client", "FIN-WAIT-2") == 0, tc + 80)
    lab.measured["client_fin_wait_2_last_seen_after_close_s"] = round(last - tc, 2)
    lab.measured["client_fin_wait_2_gone_after_close_s"] = round(gone - tc, 2) if gone else None
    lab.sleep_until(max(tc + 64, (gone or 0) + 2))
    lab.snapshot("client FIN-WAIT-2 expired, server still LAST-ACK", {"server": {"LAST-ACK": 1}})
    lab.stop_capture()
    pk = read_pcap_tcp(lab.pcap)
    sf = [p for p in pk if p["src"] == lab.saddr and p["flags"] & FIN]
    if sf:
        lab.measured["server_fin_times_rel_first_s"] = [round(p["ts"] - sf[0]["ts"], 2) for p in sf]


@scenario(16, "last_ack_ack_lost")
def sc_last_ack_ack_lost(lab):
    lab.description = ("Variant of last_ack: the client's final ACK (for the server's FIN) is sent - it is in the "
                       "pcap - but dropped at the server's INPUT. Server LAST-ACK retransmits its FIN; the client "
                       "is in TIME-WAIT and re-ACKs every retransmitted FIN (each also dropped, and each restarts "
                       "the client's TIME-WAIT timer). NOTE: this deliberately violates the analyser's 'ACKs seen "
                       "are delivered' assumption.")
    c, s = lab.agent("client"), lab.agent("server")
    lab.start_capture()
    s.cmd("listen", id="L", host=lab.saddr, port=PORT)
    la = lab.connect1(c, s, "a")
    pa = la.rsplit(":", 1)[1]
    lab.exchange(c, s, "a")
    time.sleep(0.5)
    lab.snapshot("established", {"client": {"ESTAB": 1}, "server": {"ESTAB": 1}})
    time.sleep(0.5)
    c.cmd("close", id="a")
    time.sleep(0.5)
    lab.snapshot("client FIN-WAIT-2, server CLOSE-WAIT", {"client": {"FIN-WAIT-2": 1}, "server": {"CLOSE-WAIT": 1}})
    lab.ipt("server", "-A", "INPUT", "-p", "tcp", "--sport", pa, "--dport", str(PORT), "-j", "DROP")
    lab.drops.append("server INPUT: everything from client port %s (installed after the client's FIN was ACKed; "
                     "the only packets it then catches are the client's ACKs of the server's FIN) -> DROP "
                     "(visible: the ACKs are in the pcap but never delivered)" % pa)
    r = s.cmd("recv", id="a", n=1, timeout=1)
    assert r["eof"]["a"] is True, r
    time.sleep(0.5)
    ts = time.time()
    s.cmd("close", id="a")
    lab.sleep_until(ts + 2.2)
    lab.snapshot("server LAST-ACK, client TIME-WAIT (+2.2 s)", {"client": {"TIME-WAIT": 1}, "server": {"LAST-ACK": 1}})
    lab.sleep_until(ts + 9.4)
    lab.snapshot("server LAST-ACK, client TIME-WAIT (+9.4 s)", {"client": {"TIME-WAIT": 1}, "server": {"LAST-ACK": 1}})
    lab.sleep_until(ts + 19)
    lab.snapshot("server LAST-ACK, client TIME-WAIT (+19 s)", {"client": {"TIME-WAIT": 1}, "server": {"LAST-ACK": 1}})
    lab.sleep_until(ts + 21)


@scenario(11, "fin_wait_1")
def sc_fin_wait_1(lab):
    lab.description = ("After an exchange the client's INPUT drops everything from the server (peer unreachable). "
                       "The server sends 300 bytes and closes: server FIN-WAIT-1 retransmitting data+FIN (seen in "
                       "the pcap, never delivered, never ACKed); the client stays ESTAB, knowing nothing.")
    c, s = lab.agent("client"), lab.agent("server")
    lab.start_capture()
    s.cmd("listen", id="L", host=lab.saddr, port=PORT)
    lab.connect1(c, s, "a")
    lab.exchange(c, s, "a")
    time.sleep(0.5)
    lab.snapshot("established", {"client": {"ESTAB": 1}, "server": {"ESTAB": 1}})
    time.sleep(0.5)
    lab.ipt("client", "-A", "INPUT", "-s", lab.saddr, "-j", "DROP")
    lab.drops.append("client INPUT: everything from %s -> DROP (visible: the server's data, FIN and all "
                     "retransmissions are seen, none delivered)" % lab.saddr)
    time.sleep(0.3)
    ts = time.time()
    s.cmd("send", id="a", n=300)
    s.cmd("close", id="a")
    lab.sleep_until(ts + 2.2)
    lab.snapshot("server FIN-WAIT-1, client ESTAB (+2.2 s)", {"client": {"ESTAB": 1}, "server": {"FIN-WAIT-1": 1}})
    lab.sleep_until(ts + 4.6)
    lab.snapshot("server FIN-WAIT-1, client ESTAB (+4.6 s)", {"client": {"ESTAB": 1}, "server": {"FIN-WAIT-1": 1}})
    lab.sleep_until(ts + 9.4)
    lab.snapshot("server FIN-WAIT-1, client ESTAB (+9.4 s)", {"client": {"ESTAB": 1}, "server": {"FIN-WAIT-1": 1}})
    lab.sleep_until(ts + 11)


@scenario(12, "simultaneous_close")
def sc_simultaneous_close(lab):
    lab.description = ("Simultaneous close made observable: rule A (client INPUT) drops FINs from the server, "
                       "rule B (server INPUT) drops FINs from the client. Both close at once -> both FIN-WAIT-1, "
                       "retransmitting FINs. Rule B is removed: the client's next FIN retransmission reaches the "
                       "server (FIN-WAIT-1 -> CLOSING), which ACKs it -> client FIN-WAIT-2. Rule A is removed: the "
                       "server's next FIN retransmission reaches the client -> client TIME-WAIT, its ACK -> "
                       "server TIME-WAIT.")
    lab.drops.append("rule A, client INPUT: tcp sport 8080 with FIN set -> DROP (visible), removed after the "
                     "'server CLOSING' snapshot")
    lab.drops.append("rule B, server INPUT: tcp dport 8080 with FIN set -> DROP (visible), removed after the "
                     "'both FIN-WAIT-1' snapshot")
    c, s = lab.agent("client"), lab.agent("server")
    lab.start_capture()
    s.cmd("listen", id="L", host=lab.saddr, port=PORT)
    lab.connect1(c, s, "a")
    lab.exchange(c, s, "a")
    ruleA = ["INPUT", "-p", "tcp", "--sport", str(PORT), "--tcp-flags", "FIN", "FIN", "-j", "DROP"]
    ruleB = ["INPUT", "-p", "tcp", "--dport", str(PORT), "--tcp-flags", "FIN", "FIN", "-j", "DROP"]
    lab.ipt("client", "-A", *ruleA)
    lab.ipt("server", "-A", *ruleB)
    time.sleep(0.5)
    lab.snapshot("established", {"client": {"ESTAB": 1}, "server": {"ESTAB": 1}})
    time.sleep(0.5)
    t0 = time.time()
    c.post("close", id="a")
    s.post("close", id="a")
    c.result()
    s.result()
    # FIN retransmissions at ~ +0.2, +0.6, +1.4, +3.0, +6.2, +12.6, +25.4 s on both sides
    lab.sleep_until(t0 + 2.2)
    lab.snapshot("both FIN-WAIT-1", {"client": {"FIN-WAIT-1": 1}, "server": {"FIN-WAIT-1": 1}})
    lab.sleep_until(t0 + 4.4)
    lab.ipt("server", "-D", *ruleB)
    lab.log("rule B removed")
    lab.sleep_until(t0 + 9.4)
    lab.snapshot("client FIN-WAIT-2, server CLOSING", {"client": {"FIN-WAIT-2": 1}, "server": {"CLOSING": 1}})
    lab.sleep_until(t0 + 9.9)
    lab.ipt("client", "-D", *ruleA)
    lab.log("rule A removed")
    lab.sleep_until(t0 + 19)
    lab.snapshot("both TIME-WAIT", {"client": {"TIME-WAIT": 1}, "server": {"TIME-WAIT": 1}})
    lab.sleep_until(t0 + 20)


@scenario(13, "time_wait_reuse")
def sc_time_wait_reuse(lab):
    lab.description = ("The client binds a fixed source port (SO_REUSEADDR); the server closes first and ends in "
                       "TIME-WAIT on the 4-tuple. ~3 s later the client binds the same port again and connects: "
                       "the server's TIME-WAIT socket accepts the new SYN (newer timestamp) and a new connection "
                       "(new ISNs) is established on the same 4-tuple. No drops.")
    c, s = lab.agent("client"), lab.agent("server")
    lab.start_capture()
    s.cmd("listen", id="L", host=lab.saddr, port=PORT)
    cport = 40000 + lab.n
    lab.connect1(c, s, "a", bind_host=lab.caddr, bind_port=cport, reuse=True)
    lab.exchange(c, s, "a")
    time.sleep(0.5)
    lab.snapshot("first connection established", {"client": {"ESTAB": 1}, "server": {"ESTAB": 1}})
    time.sleep(0.5)
    s.cmd("close", id="a")
    r = c.cmd("recv", id="a", n=1, timeout=2)
    assert r["eof"]["a"] is True, r
    time.sleep(0.5)
    c.cmd("close", id="a")
    time.sleep(0.7)
    lab.snapshot("server TIME-WAIT on the 4-tuple", {"server": {"TIME-WAIT": 1}})
    time.sleep(2.0)
    lab.connect1(c, s, "b", bind_host=lab.caddr, bind_port=cport, reuse=True)
    lab.exchange(c, s, "b")
    time.sleep(0.6)
    lab.snapshot("same 4-tuple re-established (TIME-WAIT reused)", {"client": {"ESTAB": 1}, "server": {"ESTAB": 1}})
    time.sleep(0.5)
    c.cmd("close", id="b")
    r = s.cmd("recv", id="b", n=1, timeout=2)
    s.cmd("close", id="b")
    time.sleep(0.7)
    lab.snapshot("second connection closed by client first", {"client": {"TIME-WAIT": 1}})
    lab.measured["client_port"] = cport


@scenario(14, "lossy_bulk")
def sc_lossy_bulk(lab):
    nbytes = 3 * 1024 * 1024
    lab.description = ("Bulk upload of %d bytes client -> server with ~3%% of the client's data segments dropped "
                       "at the server's INPUT (visible: the original segment is in the pcap, followed later by its "
                       "retransmission). The server reads everything; then a normal close, client first." % nbytes)
    lab.drops.append("server INPUT: tcp dport 8080, IP length 200..65535 (data segments only), "
                     "statistic random p=0.03 -> DROP (visible)")
    c, s = lab.agent("client"), lab.agent("server")
    lab.start_capture(snaplen=96)
    s.cmd("listen", id="L", host=lab.saddr, port=PORT)
    lab.connect1(c, s, "a")
    lab.exchange(c, s, "a")
    lab.ipt("server", "-A", "INPUT", "-p", "tcp", "--dport", str(PORT), "-m", "length", "--length", "200:65535",
            "-m", "statistic", "--mode", "random", "--probability", "0.03", "-j", "DROP")
    time.sleep(0.5)
    lab.snapshot("established", {"client": {"ESTAB": 1}, "server": {"ESTAB": 1}})
    time.sleep(0.5)
    t0 = time.time()
    c.post("send", id="a", n=nbytes, timeout=60)
    s.post("recv", id="a", n=nbytes, timeout=60)
    c.result()
    r = s.result()
    lab.measured["transfer_s"] = round(time.time() - t0, 2)
    lab.measured["bytes_received"] = r["got"]["a"]
    assert r["got"]["a"] == nbytes, r
    time.sleep(0.8)
    lab.snapshot("transfer done, still ESTAB", {"client": {"ESTAB": 1}, "server": {"ESTAB": 1}})
    time.sleep(0.5)
    c.cmd("close", id="a")
    time.sleep(0.6)
    lab.snapshot("client FIN-WAIT-2, server CLOSE-WAIT", {"client": {"FIN-WAIT-2": 1}, "server": {"CLOSE-WAIT": 1}})
    time.sleep(0.4)
    r = s.cmd("recv", id="a", n=1, timeout=2)
    s.cmd("close", id="a")
    time.sleep(0.7)
    lab.snapshot("client TIME-WAIT", {"client": {"TIME-WAIT": 1}})
    lab.stop_capture()
    st = run(["ip", "netns", "exec", lab.sns, "iptables", "-w", "5", "-nvxL", "INPUT"]).stdout
    for ln in st.splitlines():
        if "statistic" in ln:
            lab.measured["segments_dropped_by_rule"] = int(ln.split()[0])
    pk = read_pcap_tcp(lab.pcap)
    seen = Counter()
    for p in pk:
        if p["src"] == lab.caddr and p["len"] > 0:
            seen[p["seq"]] += 1
    lab.measured["client_data_segments"] = sum(seen.values())
    lab.measured["client_data_segments_retransmitted"] = sum(v - 1 for v in seen.values() if v > 1)
    lab.measured["pcap_bytes"] = os.path.getsize(lab.pcap)


@scenario(15, "concurrent_mixed")
def sc_concurrent_mixed(lab):
    n = 300
    lab.description = ("%d concurrent connections opened within ~1.5 s, each exchanging a few bytes; then, by "
                       "connection index i mod 6: 0 client closes first (-> client TIME-WAIT), 1 server closes "
                       "first (-> server TIME-WAIT), 2 client RST (SO_LINGER 0), 3 server RST, 4 left open "
                       "(ESTAB), 5 client closes and the server never does (client FIN-WAIT-2 / server "
                       "CLOSE-WAIT). No drops." % n)
    c, s = lab.agent("client"), lab.agent("server")
    lab.start_capture()
    s.cmd("listen", id="L", host=lab.saddr, port=PORT, backlog=1024)
    ids = ["c%03d" % i for i in range(n)]
    r = c.cmd("connect", ids=ids, host=lab.saddr, port=PORT, wait=10, pace=0.004)
    bad = [i for i, v in r["results"].items() if not v.get("connected")]
    if bad:
        raise RuntimeError("%d connects failed" % len(bad))
    # the accept order is arbitrary; map by peer port
    sid = ["s%03d" % i for i in range(n)]
    acc = s.cmd("accept", lid="L", ids=sid, timeout=10)["peers"]
    port_of = {v["local"]: k for k, v in r["results"].items()}
    srv = {port_of[p]: k for k, p in acc.items()}          # client id -> server id
    c.cmd("send", ids=ids, n=10)
    s.cmd("recv", ids=[srv[i] for i in ids], n=10, timeout=5)
    s.cmd("send", ids=[srv[i] for i in ids], n=20)
    c.cmd("recv", ids=ids, n=20, timeout=5)
    cls = {i: int(i[1:]) % 6 for i in ids}
    grp = lambda k: [i for i in ids if cls[i] == k]
    time.sleep(0.6)
    lab.snapshot("all %d established" % n, {"client": {"ESTAB": n}, "server": {"ESTAB": n}})
    time.sleep(0.5)
    g = {k: grp(k) for k in range(6)}
    c.cmd("close", ids=g[0] + g[5])
    s.cmd("close", ids=[srv[i] for i in g[1]])
    c.cmd("close", ids=g[2], linger0=True)
    s.cmd("close", ids=[srv[i] for i in g[3]], linger0=True)
    time.sleep(0.8)
    c.cmd("close", ids=g[3])
    s.cmd("close", ids=[srv[i] for i in g[2]])
    s.cmd("recv", ids=[srv[i] for i in g[0] + g[5]], n=1, timeout=2)
    c.cmd("recv", ids=g[1], n=1, timeout=2)
    time.sleep(0.5)
    k = {j: len(g[j]) for j in range(6)}
    lab.snapshot("first closers done",
                 {"client": {"ESTAB": k[4], "FIN-WAIT-2": k[0] + k[5], "CLOSE-WAIT": k[1]},
                  "server": {"ESTAB": k[4], "CLOSE-WAIT": k[0] + k[5], "FIN-WAIT-2": k[1]}})
    time.sleep(0.5)
    s.cmd("close", ids=[srv[i] for i in g[0]])
    c.cmd("close", ids=g[1])
    time.sleep(0.8)
    lab.snapshot("second closers done",
                 {"client": {"ESTAB": k[4], "FIN-WAIT-2": k[5], "TIME-WAIT": k[0]},
                  "server": {"ESTAB": k[4], "CLOSE-WAIT": k[5], "TIME-WAIT": k[1]}})
    time.sleep(2.0)
    lab.snapshot("steady mix",
                 {"client": {"ESTAB": k[4], "FIN-WAIT-2": k[5], "TIME-WAIT": k[0]},
                  "server": {"ESTAB": k[4], "CLOSE-WAIT": k[5], "TIME-WAIT": k[1]}})
    lab.measured["classes"] = {"client_close": k[0], "server_close": k[1], "client_rst": k[2],
                               "server_rst": k[3], "open": k[4], "close_wait_leak": k[5]}


@scenario(17, "ipv6_close", v6=True)
def sc_ipv6_close(lab):
    lab.description = ("IPv6 (fd77:11::1 -> fd77:11::2): data exchange, client closes first (FIN-WAIT-2 / "
                       "CLOSE-WAIT for ~1 s), server closes, client TIME-WAIT. No drops; addresses printed as "
                       "[addr]:port.")
    c, s = lab.agent("client"), lab.agent("server")
    lab.start_capture()
    s.cmd("listen", id="L", host=lab.saddr, port=PORT)
    lab.connect1(c, s, "a")
    lab.exchange(c, s, "a")
    time.sleep(0.5)
    lab.snapshot("established", {"client": {"ESTAB": 1}, "server": {"ESTAB": 1}})
    time.sleep(0.5)
    c.cmd("close", id="a")
    time.sleep(0.5)
    lab.snapshot("client FIN-WAIT-2, server CLOSE-WAIT", {"client": {"FIN-WAIT-2": 1}, "server": {"CLOSE-WAIT": 1}})
    time.sleep(0.5)
    s.cmd("recv", id="a", n=1, timeout=2)
    s.cmd("close", id="a")
    time.sleep(0.8)
    lab.snapshot("client TIME-WAIT", {"client": {"TIME-WAIT": 1}})


# --------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------
def run_one(name, out, agent_path, results):
    n, fn, v6 = SCENARIOS[name]
    lab = Lab(n, name, out, agent_path, v6=v6)
    t0 = time.time()
    try:
        lab.setup()
        fn(lab)
        lab.stop_capture()
        lab.finish()
        results[name] = ("ok" if not lab.warnings else "warnings", lab.warnings, time.time() - t0)
    except Exception as ex:
        traceback.print_exc()
        lab.warnings.append("FAILED: %r" % ex)
        try:
            lab.stop_capture()
            lab.finish()
        except Exception:
            pass
        results[name] = ("failed", lab.warnings, time.time() - t0)
    finally:
        lab.teardown()


def main(argv=None):
    global _TMPDIR
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these scenarios")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernel"))
    ap.add_argument("--list", action="store_true", help="list scenarios and exit")
    args = ap.parse_args(argv)
    if args.list:
        for k, (n, _, _) in sorted(SCENARIOS.items(), key=lambda kv: kv[1][0]):
            print("%2d %s" % (n, k))
        return 0
    if os.geteuid() != 0:
        print("record.py needs root (network namespaces, iptables, tcpdump)", file=sys.stderr)
        return 2
    for tool in ("ip", "ss", "tcpdump", "iptables"):
        if not shutil.which(tool):
            print("missing tool: " + tool, file=sys.stderr)
            return 2
    names = args.only or sorted(SCENARIOS, key=lambda k: SCENARIOS[k][0])
    unknown = [x for x in names if x not in SCENARIOS]
    if unknown:
        print("unknown scenario(s): %s" % ", ".join(unknown), file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    _TMPDIR = tempfile.mkdtemp(prefix="tcpfsm-rec-")
    agent_path = os.path.join(_TMPDIR, "agent.py")
    with open(agent_path, "w") as fh:
        fh.write(AGENT_SRC)
    results = {}
    threads = []
    # long scenarios first so they overlap with everything else
    for name in names:
        th = threading.Thread(target=run_one, args=(name, args.out, agent_path, results), daemon=True)
        th.start()
        threads.append(th)
        time.sleep(0.2)
    for th in threads:
        th.join(timeout=400)
    cleanup()
    print("\n=== summary ===")
    rc = 0
    for name in names:
        st, warns, dur = results.get(name, ("did not finish", [], 0))
        print("%-22s %-10s %5.1f s" % (name, st, dur))
        for w in warns:
            print("    " + w)
        if st != "ok":
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
