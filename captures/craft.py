#!/usr/bin/env python3
"""Craft the captures a real kernel will not produce, with their expectations.

    python captures/craft.py            # writes captures/crafted/*.pcap + *.expect.json

Everything is deterministic: fixed start time (2026-01-01T00:00:00Z), fixed
ISNs, seeded RNGs, explicit MAC addresses and IP ids, and a hand-written pcap
writer with integer microsecond timestamps, so a re-run is byte-identical.

Each capture is one ``build_*`` function: a few lines of ``Conversation``
calls that produce the packets, then the expectation dict. The expectation
schema is described in captures/crafted/README.md.
"""
from __future__ import annotations

import json
import random
import struct
import sys
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop
from scapy.layers.l2 import Ether

OUT = Path(__file__).resolve().parent / "crafted"
T0_US = 1767225600 * 1_000_000          # 2026-01-01T00:00:00Z, in microseconds
MAC_A = "02:00:00:00:00:01"               # "left" side (clients)
MAC_B = "02:00:00:00:00:02"               # "right" side (servers)

# TCP options of an ordinary Linux SYN / SYN-ACK (no timestamps, to keep it simple).
SYN_OPTS = [("MSS", 1460), ("NOP", None), ("NOP", None), ("SAckOK", b""), ("NOP", None), ("WScale", 7)]
M32 = 0xFFFFFFFF


# --------------------------------------------------------------------------- capture


class Capture:
    """An ordered list of (timestamp_us, frame) records plus a clock.

    ``now`` is the current time in seconds relative to T0; packets are stamped
    with it. File order is emission order unless ``swap_last``/``sort_by_time``
    are used on purpose.
    """

    def __init__(self, name: str):
        self.name = name
        self.now = 0.0
        self.records: list[tuple[int, bytes]] = []

    # clock
    def wait(self, seconds: float) -> "Capture":
        self.now += seconds
        return self

    def set(self, t: float) -> "Capture":
        self.now = t
        return self

    # records
    def emit(self, frame) -> None:
        ts = T0_US + round(self.now * 1_000_000)
        self.records.append((ts, bytes(frame)))

    def swap_last(self) -> None:
        """Swap the file position of the last two records, keeping their timestamps."""
        self.records[-1], self.records[-2] = self.records[-2], self.records[-1]

    def shift_last(self, seconds: float) -> None:
        """Give the last record a wrong timestamp (clock glitch)."""
        ts, frame = self.records[-1]
        self.records[-1] = (ts + round(seconds * 1_000_000), frame)

    def sort_by_time(self) -> None:
        self.records.sort(key=lambda r: r[0])    # stable

    # facts for the expectation file
    def rel(self, i: int) -> float:
        return (self.records[i][0] - self.records[0][0]) / 1e6

    @property
    def duration(self) -> float:
        return (max(r[0] for r in self.records) - self.records[0][0]) / 1e6

    def write(self, expect: dict) -> None:
        OUT.mkdir(parents=True, exist_ok=True)
        pcap = OUT / f"{self.name}.pcap"
        with open(pcap, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))  # LINKTYPE_ETHERNET
            for ts, frame in self.records:
                f.write(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(frame), len(frame)))
                f.write(frame)
        doc = {
            "capture": pcap.name,
            "profile": "linux",
            "records": len(self.records),
            "duration_s": round(self.duration, 6),
            **expect,
        }
        (OUT / f"{self.name}.expect.json").write_text(json.dumps(doc, indent=2) + "\n")


def rt(t: float) -> str:
    """Relative time string as used in 'at' and 'first_seen': '+0.5s'."""
    return f"+{round(t, 6)}s"


# --------------------------------------------------------------------------- conversation


def payload(n: int, tag: int = 0) -> bytes:
    base = b"tcpfsm-crafted-payload-%d-" % tag
    return (base * (n // len(base) + 1))[:n]


class Side:
    """One endpoint of a Conversation: knows its ISN, next seq and how to talk."""

    def __init__(self, conv: "Conversation", ip: str, port: int, mac: str, isn: int,
                 syn_win: int, win: int, ipid: int):
        self.conv, self.ip, self.port, self.mac = conv, ip, port, mac
        self.isn = isn & M32
        self.nxt = self.isn              # next sequence number to send
        self.syn_win, self.win = syn_win, win
        self.ipid = ipid
        self.peer: Side                  # set by Conversation
        self.syn_opts = SYN_OPTS

    @property
    def addr(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"

    # ---- low level
    def send(self, flags: str, seq: int | None = None, ack: int | None = None, data: bytes = b"",
             win: int | None = None, options=None, dt: float = 0.0, hbh: bool = False):
        """Emit one segment at capture time now+dt. Does not touch seq state."""
        cap = self.conv.cap
        cap.wait(dt)
        if seq is None:
            seq = self.nxt
        if ack is None:
            ack = self.peer.nxt if "A" in flags else 0
        tcp = TCP(sport=self.port, dport=self.peer.port, flags=flags, seq=seq & M32, ack=ack & M32,
                  window=self.win if win is None else win, options=options or [])
        if ":" in self.ip:
            ip = IPv6(src=self.ip, dst=self.peer.ip, hlim=64)
            if hbh:
                ip = ip / IPv6ExtHdrHopByHop()
        else:
            ip = IP(src=self.ip, dst=self.peer.ip, ttl=64, id=self.ipid & 0xFFFF, flags="DF")
            self.ipid += 1
        frame = Ether(src=self.mac, dst=self.peer.mac) / ip / tcp
        if data:
            frame = frame / data
        cap.emit(frame)
        return frame

    # ---- readable verbs (all keep seq/ack bookkeeping)
    def syn(self, dt: float = 0.0):
        """SYN (or its retransmission: same ISN)."""
        self.nxt = (self.isn + 1) & M32
        return self.send("S", seq=self.isn, win=self.syn_win, options=self.syn_opts, dt=dt)

    def synack(self, dt: float = 0.0):
        self.nxt = (self.isn + 1) & M32
        return self.send("SA", seq=self.isn, win=self.syn_win, options=self.syn_opts, dt=dt)

    def ack(self, dt: float = 0.0):
        return self.send("A", dt=dt)

    def data(self, n: int, dt: float = 0.0, hbh: bool = False):
        seq = self.nxt
        self.nxt = (self.nxt + n) & M32
        return self.send("PA", seq=seq, data=payload(n, self.port), dt=dt, hbh=hbh)

    def fin(self, dt: float = 0.0):
        seq = self.nxt
        self.nxt = (self.nxt + 1) & M32
        return self.send("FA", seq=seq, dt=dt)

    def rst(self, dt: float = 0.0, seq: int | None = None, ack: bool = True):
        return self.send("RA" if ack else "R", seq=seq, ack=None if ack else 0, win=0, dt=dt)


class Conversation:
    """A client and a server Side sharing one Capture: ``c, s = Conversation(...).sides``."""

    def __init__(self, cap: Capture, client: tuple[str, int], server: tuple[str, int],
                 cisn: int, sisn: int, ipid: tuple[int, int] = (0x1000, 0x2000)):
        self.cap = cap
        self.c = Side(self, client[0], client[1], MAC_A, cisn, syn_win=64240, win=502, ipid=ipid[0])
        self.s = Side(self, server[0], server[1], MAC_B, sisn, syn_win=65160, win=509, ipid=ipid[1])
        self.c.peer, self.s.peer = self.s, self.c

    @property
    def sides(self) -> tuple[Side, Side]:
        return self.c, self.s

    def assume_established(self) -> None:
        """For mid-stream captures: both sides past the handshake, nothing sent on the wire."""
        self.c.nxt = (self.c.isn + 1) & M32
        self.s.nxt = (self.s.isn + 1) & M32

    def flow(self, *, final: dict, transitions: dict, initial: dict | None = None,
             role_inferred: bool = False, first_seen: float = 0.0, **extra) -> dict:
        d = {"client": self.c.addr, "server": self.s.addr, "role_inferred": role_inferred,
             "first_seen": rt(first_seen),
             "initial": initial or {"client": "CLOSED", "server": "LISTEN"},
             "final": final, "transitions": transitions}
        d.update(extra)
        return d


# Transition lists used over and over.
CLIENT_OPEN = ["CLOSED>SYN_SENT", "SYN_SENT>ESTABLISHED"]
SERVER_OPEN = ["LISTEN>SYN_RECEIVED", "SYN_RECEIVED>ESTABLISHED"]
ACTIVE_CLOSE = ["ESTABLISHED>FIN_WAIT_1", "FIN_WAIT_1>FIN_WAIT_2", "FIN_WAIT_2>TIME_WAIT"]
PASSIVE_CLOSE = ["ESTABLISHED>CLOSE_WAIT", "CLOSE_WAIT>LAST_ACK", "LAST_ACK>CLOSED"]
NORMAL_CLIENT_FIRST = {"client": CLIENT_OPEN + ACTIVE_CLOSE, "server": SERVER_OPEN + PASSIVE_CLOSE}
FINAL_CLIENT_FIRST = {"client": "TIME_WAIT", "server": "CLOSED"}


def open_conn(c: Side, s: Side, rtt: float = 0.010) -> None:
    c.syn()
    s.synack(dt=rtt)
    c.ack(dt=0.0001)


def close_client_first(c: Side, s: Side, rtt: float = 0.010) -> None:
    c.fin(dt=0.0001)
    s.ack(dt=rtt)          # client FIN_WAIT_2, server CLOSE_WAIT
    s.fin(dt=0.0002)       # server LAST_ACK
    c.ack(dt=rtt)          # client TIME_WAIT, server CLOSED


def key(local: Side, remote: Side) -> str:
    return f"{local.addr} {remote.addr}"


# --------------------------------------------------------------------------- captures


def build_simultaneous_open():
    cap = Capture("simultaneous_open")
    a, b = Conversation(cap, ("10.0.0.1", 40000), ("10.0.0.2", 40001), 0x1A2B3C4D, 0x5E6F7081).sides
    a.syn()                  # A: CLOSED > SYN_SENT
    b.syn(dt=0.0005)         # B: CLOSED > SYN_SENT (crossing, no ACK bit)
    a.synack(dt=0.010)       # A got B's SYN: SYN_SENT > SYN_RECEIVED (seq = A's ISN again, ack = B ISN+1)
    b.synack(dt=0.0005)      # B: SYN_SENT > SYN_RECEIVED
    t_sr = cap.now
    a.ack(dt=0.010)          # A acks B's SYN-ACK: A ESTABLISHED (and B, by the handshake-ACK rule)
    b.ack(dt=0.0005)         # B acks A's SYN-ACK: B ESTABLISHED at the latest here
    t_est = cap.now
    a.data(120, dt=0.050)
    b.data(800, dt=0.010)
    a.ack(dt=0.010)
    close_client_first(a, b)
    t_end = cap.now
    sim = ["CLOSED>SYN_SENT", "SYN_SENT>SYN_RECEIVED", "SYN_RECEIVED>ESTABLISHED"]
    conv = a.conv
    cap.write({
        "description": "Simultaneous open: SYNs cross (no ACK bit), each side then sends SYN-ACK, then each ACKs; "
                       "both go SYN_SENT > SYN_RECEIVED > ESTABLISHED. Then data and a normal close, "
                       "10.0.0.1 (the first SYN sender, called client) closing first.",
        "flows": [conv.flow(
            initial={"client": "CLOSED", "server": "CLOSED"},
            final=FINAL_CLIENT_FIRST,
            transitions={"client": sim + ACTIVE_CLOSE, "server": sim + PASSIVE_CLOSE},
            simultaneous_open=True,
            anomalies=[], anomalies_not=["invalid_transition", "retransmitted_syn", "retransmitted_synack"])],
        "anomalies_must": [],
        "anomalies_must_not": ["invalid_transition", "retransmitted_syn", "retransmitted_synack", "midstream",
                               "unanswered_syn", "rst_abort", "half_open"],
        "at": [
            {"t": rt(0.0006), "host": "10.0.0.1", "states": {key(a, b): "SYN_SENT"}},
            {"t": rt(0.0006), "host": "10.0.0.2", "states": {key(b, a): "SYN_SENT"}},
            {"t": rt(t_sr + 0.0001), "host": "10.0.0.1", "states": {key(a, b): "SYN_RECEIVED"}},
            {"t": rt(t_sr + 0.0001), "host": "10.0.0.2", "states": {key(b, a): "SYN_RECEIVED"}},
            {"t": rt(t_est + 0.001), "host": "10.0.0.1", "states": {key(a, b): "ESTABLISHED"}},
            {"t": rt(t_est + 0.006), "host": "10.0.0.2", "states": {key(b, a): "ESTABLISHED"}},  # ACK + 5 ms to the server
            {"t": rt(t_end), "host": "10.0.0.1", "states": {key(a, b): "TIME_WAIT"}},
        ],
    })


def build_out_of_window_rst():
    cap = Capture("out_of_window_rst")
    conv1 = Conversation(cap, ("10.0.0.1", 41000), ("10.0.0.2", 80), 0x11111111, 0x22222222)
    c, s = conv1.sides
    open_conn(c, s)
    c.data(100, dt=0.010)
    s.data(1000, dt=0.010)
    c.ack(dt=0.0002)
    # Spoofed RST "from the server" with seq ~1.9e9 past the client's rcv_nxt: far outside any window
    # (even wscale 14 gives < 2^30). Must be flagged and ignored.
    bogus_seq = (s.nxt + 0x70000000) & M32
    s.send("R", seq=bogus_seq, ack=0, win=0, dt=0.500)
    t_rst1 = cap.now
    c.data(200, dt=0.100)     # life goes on
    s.data(1400, dt=0.010)
    c.ack(dt=0.0002)
    close_client_first(c, s)

    cap.wait(0.5)
    conv2 = Conversation(cap, ("10.0.0.1", 41001), ("10.0.0.2", 80), 0x33333333, 0x44444444)
    c2, s2 = conv2.sides
    t2 = cap.now
    open_conn(c2, s2)
    c2.data(100, dt=0.010)
    s2.ack(dt=0.010)
    # In-window RST: seq exactly the client's rcv_nxt (= server snd_nxt). Honoured: both CLOSED.
    s2.rst(dt=0.200)
    t_rst2 = cap.now
    cap.write({
        "description": "Flow 1: established; a RST with seq rcv_nxt+0x70000000 arrives (out of any window) and "
                       "must be ignored; data continues and the client closes normally. Flow 2: a RST|ACK from the "
                       "server with seq exactly the client's rcv_nxt is honoured (both CLOSED, rst_abort).",
        "flows": [
            conv1.flow(final=FINAL_CLIENT_FIRST, transitions=NORMAL_CLIENT_FIRST,
                       anomalies=["out_of_window_rst"], anomalies_not=["rst_abort"],
                       rst_seq=bogus_seq, rst_at=rt(t_rst1)),
            conv2.flow(first_seen=t2, final={"client": "CLOSED", "server": "CLOSED"},
                       transitions={"client": CLIENT_OPEN + ["ESTABLISHED>CLOSED"],
                                    "server": SERVER_OPEN + ["ESTABLISHED>CLOSED"]},
                       anomalies=["rst_abort"], anomalies_not=["out_of_window_rst"], rst_at=rt(t_rst2)),
        ],
        "anomalies_must": ["out_of_window_rst", "rst_abort"],
        "anomalies_must_not": ["invalid_transition", "midstream", "data_after_fin"],
        "at": [
            {"t": rt(t_rst1 + 0.001), "host": "10.0.0.1", "states": {key(c, s): "ESTABLISHED"}},
            {"t": rt(t_rst1 + 0.001), "host": "10.0.0.2", "states": {key(s, c): "ESTABLISHED"}},
            {"t": rt(t_rst2 - 0.001), "host": "10.0.0.1", "states": {key(c2, s2): "ESTABLISHED"}},
        ],
    })


def build_data_after_fin():
    cap = Capture("data_after_fin")
    conv = Conversation(cap, ("10.0.0.1", 42000), ("10.0.0.2", 8080), 0x0BADF00D, 0x7E57AB1E)
    c, s = conv.sides
    open_conn(c, s)
    c.data(100, dt=0.010)
    s.data(200, dt=0.010)
    c.ack(dt=0.0002)
    c.fin(dt=1.0)                 # client FIN_WAIT_1; FIN occupies seq X
    fin_seq = c.nxt - 1
    t_fin = cap.now
    c.data(50, dt=0.001)          # seq X+1: data beyond the FIN -> data_after_fin
    t_bad = cap.now
    s.ack(dt=0.010)               # ack X+51 covers the FIN: client FIN_WAIT_2, server CLOSE_WAIT
    s.fin(dt=0.010)
    c.ack(dt=0.010)
    cap.write({
        "description": "Client sends FIN (seq X), then 50 bytes of data at seq X+1 (beyond its own FIN), then the "
                       "server ACKs X+51 and closes. States are those of a normal client-first close; the data "
                       "segment is flagged data_after_fin and changes no state.",
        "flows": [conv.flow(final=FINAL_CLIENT_FIRST, transitions=NORMAL_CLIENT_FIRST,
                            anomalies=["data_after_fin"], fin_seq=fin_seq, data_after_fin_at=rt(t_bad))],
        "anomalies_must": ["data_after_fin"],
        "anomalies_must_not": ["rst_abort", "out_of_window_rst", "midstream"],
        "anomalies_may": ["invalid_transition"],
        "at": [
            {"t": rt(t_bad + 0.0005), "host": "10.0.0.1", "states": {key(c, s): "FIN_WAIT_1"}},
            {"t": rt(t_bad + 0.0005), "host": "10.0.0.2", "states": {key(s, c): "ESTABLISHED"}},
            {"t": rt(t_fin + 0.0115), "host": "10.0.0.2", "states": {key(s, c): "CLOSE_WAIT"}},
        ],
    })


def build_backwards_ts():
    cap = Capture("backwards_ts")
    conv = Conversation(cap, ("10.0.0.1", 43000), ("10.0.0.2", 80), 0xC0FFEE00, 0xFACADE00)
    c, s = conv.sides
    steps = []
    c.syn()                      # 0.000
    s.synack(dt=0.020)           # 0.020
    c.ack(dt=0.003)              # 0.023
    cap.swap_last()              # file: SYN, ACK(0.023), SYN-ACK(0.020)  -> step back 3 ms
    steps.append({"record": 3, "back_s": 0.003, "kind": "file order wrong, timestamps right"})
    c.data(200, dt=0.001)        # 0.024
    s.data(1000, dt=0.021)       # 0.045
    c.ack(dt=0.001)              # 0.046
    c.data(100, dt=1.954)        # 2.000
    s.ack(dt=0.020)              # 2.020
    s.data(300, dt=0.0001)       # true 2.0201 ...
    cap.shift_last(-1.0001)      # ... stamped 1.0200: exactly 1 s before the previous record; nothing else moved
    steps.append({"record": len(cap.records), "back_s": 1.0,
                  "kind": "single record stamped 1 s early; its position vs. the previous record is irrelevant"})
    c.ack(dt=0.040)              # 2.060
    c.fin(dt=0.940)              # 3.000
    t_fin = cap.now
    s.ack(dt=0.004)              # 3.004  ACK covering the client's FIN
    cap.swap_last()              # file: ACK(3.004) before FIN(3.000)  -> step back 4 ms
    steps.append({"record": len(cap.records), "back_s": 0.004, "kind": "file order wrong, timestamps right"})
    s.fin(dt=0.006)              # 3.010
    c.ack(dt=0.003)              # 3.013  last record, max timestamp
    cap.write({
        "description": "Normal connection, client closes first, with three backward timestamp steps: the "
                       "handshake ACK is written before the SYN-ACK it answers (3 ms back), the server's ACK of "
                       "the client FIN is written before the FIN (4 ms back), and one server data segment is "
                       "stamped 1 s early. Ordering by timestamp (stable) gives the causal order for all three.",
        "backward_steps": steps,
        "flows": [conv.flow(final=FINAL_CLIENT_FIRST, transitions=NORMAL_CLIENT_FIRST, anomalies=[])],
        "anomalies_must": [],
        "anomalies_must_not": ["invalid_transition", "midstream", "data_after_fin", "rst_abort",
                               "out_of_window_rst", "retransmitted_synack", "retransmitted_syn"],
        "at": [
            {"t": rt(0.0215), "host": "10.0.0.2", "states": {key(s, c): "SYN_RECEIVED"}},
            {"t": rt(0.0235), "host": "10.0.0.1", "states": {key(c, s): "ESTABLISHED"}},
            {"t": rt(0.0345), "host": "10.0.0.2", "states": {key(s, c): "ESTABLISHED"}},  # ACK + 10 ms to the server
            {"t": rt(t_fin + 0.006), "host": "10.0.0.1", "states": {key(c, s): "FIN_WAIT_2"}},
            # the handshake puts the server 10 ms from the tap, so its ACK (seen 4 ms after the FIN) and its own
            # FIN (10 ms after) left it just after the FIN arrived: CLOSE_WAIT from t_fin - 1.5 ms to t_fin
            {"t": rt(t_fin - 0.0001), "host": "10.0.0.2", "states": {key(s, c): "CLOSE_WAIT"}},
        ],
    })


def build_midstream():
    cap = Capture("midstream")
    conv = Conversation(cap, ("10.0.0.1", 51000), ("10.0.0.2", 443), 0x51000000, 0x44300000)
    c, s = conv.sides
    conv.assume_established()
    s.data(1200)                  # first record: server -> client, so "first sender = client" would be wrong
    c.ack(dt=0.0002)
    c.data(80, dt=0.100)
    s.data(1400, dt=0.015)
    c.ack(dt=0.0002)
    c.data(40, dt=0.200)
    s.ack(dt=0.015)
    close_client_first(c, s, rtt=0.015)
    est = {"client": "ESTABLISHED", "server": "ESTABLISHED"}
    cap.write({
        "description": "Capture starts mid-connection: data both ways between 10.0.0.1:51000 and 10.0.0.2:443 "
                       "without a handshake (first record is server -> client), then the client closes first. "
                       "Roles are inferred from the ports (443 is the server); both start ESTABLISHED.",
        "flows": [conv.flow(initial=est, role_inferred=True, final=FINAL_CLIENT_FIRST,
                            transitions={"client": ACTIVE_CLOSE, "server": PASSIVE_CLOSE},
                            anomalies=["midstream"])],
        "anomalies_must": ["midstream"],
        "anomalies_must_not": ["invalid_transition", "rst_abort", "data_after_fin", "unanswered_syn"],
        "at": [
            {"t": rt(0.1), "host": "10.0.0.2", "states": {key(s, c): "ESTABLISHED"}},
            {"t": rt(0.1), "host": "10.0.0.1", "states": {key(c, s): "ESTABLISHED"}},
        ],
    })


def build_midstream_synack():
    cap = Capture("midstream_synack")
    conv = Conversation(cap, ("10.0.0.9", 38000), ("10.0.0.5", 5432), 0x38000001, 0x54320001)
    c, s = conv.sides
    c.nxt = (c.isn + 1) & M32     # the client's SYN happened but was not captured
    s.synack()                    # first record
    c.ack(dt=0.0003)
    c.data(60, dt=0.0002)
    s.data(300, dt=0.001)
    c.ack(dt=0.0003)
    # the server closes first this time
    s.fin(dt=0.500)
    c.ack(dt=0.0003)
    c.fin(dt=0.002)
    s.ack(dt=0.0003)
    cap.write({
        "description": "The first record is a SYN-ACK from 10.0.0.5:5432 (its SYN was not captured): the SYN-ACK "
                       "sender is the server, the other side the client (assumed SYN_SENT). Handshake completes, "
                       "a query/answer, then the server closes first (server TIME_WAIT, client CLOSED).",
        "flows": [conv.flow(initial={"client": "SYN_SENT", "server": "LISTEN"}, role_inferred=True,
                            final={"client": "CLOSED", "server": "TIME_WAIT"},
                            transitions={"client": ["SYN_SENT>ESTABLISHED"] + PASSIVE_CLOSE,
                                         "server": SERVER_OPEN + ACTIVE_CLOSE})],
        "anomalies_must": [],
        "anomalies_may": ["midstream"],
        "anomalies_must_not": ["invalid_transition", "retransmitted_synack", "unanswered_syn", "rst_abort"],
        "at": [
            {"t": rt(0.0001), "host": "10.0.0.5", "states": {key(s, c): "SYN_RECEIVED"}},
            {"t": rt(0.0001), "host": "10.0.0.9", "states": {key(c, s): "SYN_SENT"}},
            {"t": rt(0.001), "host": "10.0.0.5", "states": {key(s, c): "ESTABLISHED"}},
        ],
    })


def build_port_scan():
    cap = Capture("port_scan")
    rng = random.Random(9293_7)
    ports = [21, 22, 23, 25, 53, 80, 110, 111, 135, 139, 143, 443, 445, 465, 587, 993, 995, 1025, 1433, 1521,
             1723, 2049, 2121, 3000, 3128, 3306, 3389, 4444, 5000, 5060, 5432, 5900, 5984, 6000, 6379, 6667,
             7001, 8000, 8008, 8080, 8081, 8443, 8888, 9000, 9090, 9100, 9200, 9418, 10000, 11211, 27017,
             49152, 49153, 49154, 50000, 5601, 1883, 389, 636, 873]
    assert len(set(ports)) == 60
    rng.shuffle(ports)
    silent = set(ports[0::6])                 # 10 filtered ports: no answer at all (first probe is one)
    probes = []
    for i, port in enumerate(ports):
        conv = Conversation(cap, ("10.0.0.66", 54321), ("10.0.0.10", port), rng.getrandbits(32), 0,
                            ipid=(rng.getrandbits(16), 0))
        c, s = conv.sides
        c.syn_opts = [("MSS", 1460)]
        c.syn_win = 1024
        cap.set(i * 0.025)
        c.syn()
        if port not in silent:
            s.rst(dt=0.0003)                  # RST|ACK seq 0, ack = ISN+1: plausible answer to the SYN
        probes.append((port, c))
    # like nmap, probe the filtered ports once more after the sweep (same ISN: a retransmission)
    for k, (port, c) in enumerate(p for p in probes if p[0] in silent):
        cap.set(1.6 + k * 0.02)
        c.syn()
    cap.write({
        "description": "10.0.0.66:54321 sends one SYN each to 60 ports of 10.0.0.10 within 1.5 s (every 25 ms). "
                       "50 ports answer RST|ACK (seq 0, ack ISN+1: closed), 10 never answer (filtered) and are "
                       "probed once more at +1.6 s, as nmap does.",
        "counts": {
            "flows": 60,
            "client_states_at_end": {"CLOSED": 50, "SYN_SENT": 10},
            "server_states_at_end_rejected": {"CLOSED": 50},
            "anomaly_counts": {"port_scan": 1, "rejected": 50, "unanswered_syn": 10},
        },
        "scanner": "10.0.0.66", "target": "10.0.0.10",
        "ports_rejected": sorted(p for p in ports if p not in silent),
        "ports_unanswered": sorted(silent),
        "anomalies_must": ["port_scan", "rejected", "unanswered_syn"],
        "anomalies_must_not": ["syn_flood", "rst_abort", "out_of_window_rst", "midstream", "invalid_transition"],
    })


def build_syn_flood_spoofed():
    cap = Capture("syn_flood_spoofed")
    rng = random.Random(9293_8)
    srcs: set[str] = set()
    while len(srcs) < 500:
        a = rng.randrange(1, 224)
        if a in (10, 100, 127, 169, 172, 192, 198, 203):   # keep clear of private/reserved-looking space
            continue
        srcs.add(f"{a}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}")
    srcs_l = sorted(srcs)
    rng.shuffle(srcs_l)
    for i, src in enumerate(srcs_l):
        conv = Conversation(cap, (src, rng.randrange(1024, 65536)), ("10.0.0.80", 80),
                            rng.getrandbits(32), rng.getrandbits(32), ipid=(rng.getrandbits(16), 0))
        c, s = conv.sides
        c.syn_opts, c.syn_win = [("MSS", 1460)], 512
        t = i * 0.002                          # 500 SYNs in 1 s
        cap.set(t)
        c.syn()
        for rto in (0.0001, 1.0, 3.0, 7.0):    # SYN-ACK, then Linux-style retransmits at +1, +3, +7 s
            cap.set(t + rto)
            s.synack()
    cap.sort_by_time()
    cap.write({
        "description": "500 SYNs from 500 distinct random (spoofed) sources to 10.0.0.80:80 within 1 s; the "
                       "server answers each with a SYN-ACK and retransmits it at +1, +3 and +7 s; nobody ACKs. "
                       "Capture ends ~8 s after start, well before the ~63 s SYN_RECEIVED give-up.",
        "counts": {
            "flows": 500,
            "client_states_at_end": {"SYN_SENT": 500},
            "server_states_at_end": {"SYN_RECEIVED": 500},
            "synack_retransmissions": 1500,
            "anomaly_counts": {"syn_flood": 1, "half_open": 500},
        },
        "target": "10.0.0.80:80",
        "anomalies_must": ["syn_flood", "half_open", "syn_received_pile"],
        "anomalies_must_not": ["port_scan", "rejected", "unanswered_syn", "rst_abort", "midstream",
                               "retransmitted_synack"],
        "at": [{"t": rt(4.0), "host": "10.0.0.80", "state_counts": {"SYN_RECEIVED": 500}}],
    })


def build_ipv6_normal():
    cap = Capture("ipv6_normal")
    conv = Conversation(cap, ("2001:db8::1", 45000), ("2001:db8::2", 80), 0x60000001, 0x60000002)
    c, s = conv.sides
    open_conn(c, s)
    c.data(100, dt=0.010, hbh=True)   # this one carries a hop-by-hop options header (8 bytes, PadN)
    s.data(1200, dt=0.010)
    c.ack(dt=0.0002)
    close_client_first(c, s)
    cap.write({
        "description": "Full IPv6 connection [2001:db8::1]:45000 -> [2001:db8::2]:80: handshake, request, "
                       "response, client closes first. The 100-byte request (record 4) carries an 8-byte "
                       "hop-by-hop options header before TCP: payload length must come out as 100.",
        "hop_by_hop_record": 4, "hop_by_hop_plen": 100,
        "flows": [conv.flow(final=FINAL_CLIENT_FIRST, transitions=NORMAL_CLIENT_FIRST, anomalies=[])],
        "anomalies_must": [],
        "anomalies_must_not": ["midstream", "invalid_transition", "data_after_fin", "rst_abort",
                               "out_of_window_rst", "unanswered_syn"],
        "at": [
            {"t": rt(0.016), "host": "2001:db8::2", "states": {key(s, c): "ESTABLISHED"}},  # ACK + 5 ms to the server
        ],
    })


def build_retransmitted_syn():
    cap = Capture("retransmitted_syn")
    conv = Conversation(cap, ("10.0.0.1", 46000), ("10.0.0.2", 80), 0x5EED5EED, 0xD00DFEED)
    c, s = conv.sides
    c.syn()
    c.syn(dt=1.0)
    c.syn(dt=1.0)
    c.syn(dt=1.0)                # third retransmission, at +3 s
    s.synack(dt=0.020)           # answered
    c.ack(dt=0.0002)
    t_est = cap.now
    c.data(100, dt=0.001)
    s.data(500, dt=0.020)
    c.ack(dt=0.0002)
    close_client_first(c, s, rtt=0.020)
    cap.write({
        "description": "Client SYN at 0 s, retransmitted (same ISN) at +1, +2 and +3 s; the fourth is answered "
                       "20 ms later, the connection completes (connect latency ~3.02 s from first SYN to "
                       "SYN-ACK) and closes normally, client first.",
        "connect_latency_s": round(t_est - 0.0002, 6),
        "syn_retransmissions": 3,
        "flows": [conv.flow(final=FINAL_CLIENT_FIRST, transitions=NORMAL_CLIENT_FIRST,
                            anomalies=["retransmitted_syn"])],
        "anomalies_must": ["retransmitted_syn"],
        "anomalies_must_not": ["unanswered_syn", "invalid_transition", "midstream", "rejected"],
        "at": [
            {"t": rt(2.5), "host": "10.0.0.1", "states": {key(c, s): "SYN_SENT"}},
            {"t": rt(t_est + 0.0005), "host": "10.0.0.1", "states": {key(c, s): "ESTABLISHED"}},
        ],
    })


def build_invalid_transition():
    cap = Capture("invalid_transition")
    # Flow A: a second SYN-ACK, with a different ISN, after the connection is ESTABLISHED.
    convA = Conversation(cap, ("10.0.0.1", 47000), ("10.0.0.2", 80), 0xAAAA0000, 0xBBBB0000)
    c, s = convA.sides
    open_conn(c, s)
    c.data(100, dt=0.010)
    s.data(400, dt=0.010)
    c.ack(dt=0.0002)
    s.send("SA", seq=0x0DDBA11, ack=c.isn + 1, win=s.syn_win, options=SYN_OPTS, dt=0.300)
    t_badA = cap.now
    c.ack(dt=0.0002)             # RFC 5961 challenge ACK: current seq/ack, nothing changes
    s.data(200, dt=0.010)
    c.ack(dt=0.0002)
    close_client_first(c, s)

    # Flow B: client in SYN_SENT receives data from the "server", which never sent a SYN-ACK.
    cap.wait(0.5)
    tB = cap.now
    convB = Conversation(cap, ("10.0.0.1", 47001), ("10.0.0.2", 80), 0xCCCC0000, 0xDDDD0000)
    c2, s2 = convB.sides
    c2.syn()
    s2.send("PA", seq=0x13371337, ack=c2.isn + 1, data=payload(20, 99), dt=0.010)
    t_badB = cap.now
    c2.syn(dt=1.0)               # the client is still in SYN_SENT: it retransmits its SYN
    s2.synack(dt=0.010)
    c2.ack(dt=0.0002)
    c2.data(50, dt=0.001)
    s2.ack(dt=0.010)
    close_client_first(c2, s2)
    cap.write({
        "description": "Flow A: after ESTABLISHED and some data the server sends a fresh SYN-ACK with a different "
                       "ISN; the client answers with a challenge ACK and the connection carries on and closes "
                       "normally. Flow B: after the client's SYN the 'server' sends a 20-byte data segment "
                       "(ACK of the SYN, no SYN bit) without ever having sent a SYN-ACK; the client retransmits "
                       "its SYN 1 s later and the handshake then completes normally. Both offending segments "
                       "are flagged invalid_transition and change no state.",
        "flows": [
            convA.flow(final=FINAL_CLIENT_FIRST, transitions=NORMAL_CLIENT_FIRST,
                       anomalies=["invalid_transition"], anomalies_not=["retransmitted_synack"],
                       invalid_at=rt(t_badA)),
            convB.flow(first_seen=tB, final=FINAL_CLIENT_FIRST, transitions=NORMAL_CLIENT_FIRST,
                       anomalies=["invalid_transition"], anomalies_may=["retransmitted_syn"],
                       invalid_at=rt(t_badB)),
        ],
        "anomalies_must": ["invalid_transition"],
        "anomalies_must_not": ["midstream", "rst_abort", "out_of_window_rst", "data_after_fin"],
        "anomalies_may": ["retransmitted_syn"],
        "at": [
            {"t": rt(t_badA + 0.0001), "host": "10.0.0.2", "states": {key(s, c): "ESTABLISHED"}},
            {"t": rt(t_badA + 0.0001), "host": "10.0.0.1", "states": {key(c, s): "ESTABLISHED"}},
            {"t": rt(t_badB + 0.5), "host": "10.0.0.1", "states": {key(c2, s2): "SYN_SENT"}},
        ],
    })


def build_time_wait_pile():
    cap = Capture("time_wait_pile")
    rng = random.Random(9293_12)
    tw_entered = []
    for i in range(300):
        conv = Conversation(cap, ("10.0.0.1", 40000 + i), ("10.0.0.2", 80), rng.getrandbits(32),
                            rng.getrandbits(32), ipid=(0x1000 + 10 * i, 0x8000 + 10 * i))
        c, s = conv.sides
        cap.set(i * 0.066)                 # 300 connections in 19.8 s
        open_conn(c, s, rtt=0.0005)
        c.data(78, dt=0.0001)
        s.data(600, dt=0.0015)
        c.ack(dt=0.0001)
        close_client_first(c, s, rtt=0.0005)
        tw_entered.append(cap.now)
    end = cap.duration
    tw_at_10 = sum(1 for t in tw_entered if t <= 10.0)
    cap.write({
        "description": "10.0.0.1 opens 300 sequential short HTTP-like connections (ports 40000-40299) to "
                       "10.0.0.2:80, one every 66 ms, each closed by the client first. The capture ends 19.7 s in, "
                       "so all 300 client sockets are in TIME_WAIT at once at the end.",
        "counts": {
            "flows": 300,
            "client_states_at_end": {"TIME_WAIT": 300},
            "server_states_at_end": {"CLOSED": 300},
            "anomaly_counts": {"time_wait_pile": 1},
        },
        "anomalies_must": ["time_wait_pile"],
        "anomalies_must_not": ["time_wait_reuse", "rst_abort", "midstream", "invalid_transition",
                               "syn_flood", "port_scan"],
        "at": [
            {"t": rt(end), "host": "10.0.0.1", "state_counts": {"TIME_WAIT": 300}},
            {"t": rt(10.0), "host": "10.0.0.1", "state_counts": {"TIME_WAIT": tw_at_10}},
        ],
    })


def build_tw_reuse():
    cap = Capture("tw_reuse")
    conv1 = Conversation(cap, ("10.0.0.1", 44000), ("10.0.0.2", 80), 0x10000000, 0x20000000)
    c, s = conv1.sides
    open_conn(c, s)
    c.data(100, dt=0.001)
    s.data(700, dt=0.010)
    c.ack(dt=0.0002)
    # server closes first
    s.fin(dt=0.050)
    c.ack(dt=0.010)
    c.fin(dt=0.001)
    s.ack(dt=0.010)              # server TIME_WAIT
    t_tw = cap.now
    # 5 s later: same 4-tuple, new SYN with a much higher ISN -> accepted from TIME_WAIT
    cap.set(t_tw + 5.0)
    t2 = cap.now
    conv2 = Conversation(cap, ("10.0.0.1", 44000), ("10.0.0.2", 80), c.nxt + 1_000_000, 0x30000000,
                         ipid=(c.ipid, s.ipid))
    c2, s2 = conv2.sides
    open_conn(c2, s2)
    c2.data(100, dt=0.001)
    s2.data(700, dt=0.010)
    c2.ack(dt=0.0002)
    close_client_first(c2, s2)
    cap.write({
        "description": "Connection 1 on 10.0.0.1:44000 -> 10.0.0.2:80 is closed by the server first (server "
                       "TIME_WAIT). 5 s later the client reuses the same 4-tuple with a SYN whose ISN is 1e6 above "
                       "the old sequence space; the server (still in TIME_WAIT) accepts it: two flows on one "
                       "4-tuple, the second flagged time_wait_reuse. Connection 2 is closed client first.",
        "flows": [
            conv1.flow(final={"client": "CLOSED", "server": "CLOSED"},
                       transitions={"client": CLIENT_OPEN + PASSIVE_CLOSE,
                                    "server": SERVER_OPEN + ACTIVE_CLOSE + ["TIME_WAIT>CLOSED"]},
                       anomalies=[], note="server's TIME_WAIT ends when the new SYN on the 4-tuple is accepted"),
            conv2.flow(first_seen=t2, final=FINAL_CLIENT_FIRST, transitions=NORMAL_CLIENT_FIRST,
                       anomalies=["time_wait_reuse"], isn=c2.isn),
        ],
        "anomalies_must": ["time_wait_reuse"],
        "anomalies_must_not": ["retransmitted_syn", "invalid_transition", "rst_abort", "midstream"],
        "at": [
            {"t": rt(t_tw + 4.9), "host": "10.0.0.2", "states": {key(s, c): "TIME_WAIT"}},
            {"t": rt(t_tw + 4.9), "host": "10.0.0.1", "states": {key(c, s): "CLOSED"}},
            {"t": rt(t2 + 0.01005), "host": "10.0.0.2", "states": {key(s, c): "SYN_RECEIVED"}},
            {"t": rt(t2 + 0.016), "host": "10.0.0.2", "states": {key(s, c): "ESTABLISHED"}},  # ACK + 5 ms to the server
        ],
    })


def build_windows_tw():
    cap = Capture("windows_tw")
    conv1 = Conversation(cap, ("10.0.0.1", 50000), ("10.0.0.2", 80), 0x77770000, 0x88880000)
    c, s = conv1.sides
    open_conn(c, s)
    c.data(100, dt=0.001)
    s.data(900, dt=0.010)
    c.ack(dt=0.0002)
    close_client_first(c, s)
    t_tw = cap.now
    # 200 s later an unrelated short connection keeps the capture going.
    cap.set(200.0)
    conv2 = Conversation(cap, ("10.0.0.3", 50001), ("10.0.0.2", 80), 0x99990000, 0xAAAA0000)
    c2, s2 = conv2.sides
    open_conn(c2, s2)
    c2.data(100, dt=0.001)
    s2.ack(dt=0.010)
    close_client_first(c2, s2)
    tw_lin = CLIENT_OPEN + ACTIVE_CLOSE + ["TIME_WAIT>CLOSED"]
    cap.write({
        "description": "Client 10.0.0.1 (a Windows host) closes first and enters TIME_WAIT at ~0.04 s. 200 s later "
                       "an unrelated short connection (10.0.0.3) runs so the capture lasts 200 s. With the linux "
                       "profile the first client's TIME_WAIT expires at ~60 s; with --profile windows (240 s) it "
                       "is still TIME_WAIT at the end.",
        "time_wait_entered": rt(t_tw),
        "flows": [
            conv1.flow(final={"client": "CLOSED", "server": "CLOSED"},
                       transitions={"client": tw_lin, "server": SERVER_OPEN + PASSIVE_CLOSE},
                       final_by_profile={"windows": FINAL_CLIENT_FIRST},
                       transitions_by_profile={"windows": NORMAL_CLIENT_FIRST}, anomalies=[]),
            conv2.flow(first_seen=200.0, final=FINAL_CLIENT_FIRST, transitions=NORMAL_CLIENT_FIRST, anomalies=[]),
        ],
        "anomalies_must": [],
        "anomalies_must_not": ["midstream", "invalid_transition", "rst_abort", "time_wait_reuse"],
        "at": [
            {"t": rt(30.0), "host": "10.0.0.1", "states": {key(c, s): "TIME_WAIT"}},
            {"t": rt(100.0), "host": "10.0.0.1", "states": {key(c, s): "CLOSED"}},
            {"t": rt(100.0), "profile": "windows", "host": "10.0.0.1", "states": {key(c, s): "TIME_WAIT"}},
            {"t": rt(cap.duration), "host": "10.0.0.1", "states": {key(c, s): "CLOSED"}},
            {"t": rt(cap.duration), "profile": "windows", "host": "10.0.0.1", "states": {key(c, s): "TIME_WAIT"}},
        ],
    })


def build_retransmitted_synack():
    cap = Capture("retransmitted_synack")
    conv = Conversation(cap, ("10.0.0.1", 46100), ("10.0.0.2", 80), 0x51A0C0DE, 0x0DDBA11)
    c, s = conv.sides
    c.syn()
    s.synack(dt=0.010)
    s.synack(dt=1.0)             # the first SYN-ACK was lost on its way to the client: retransmitted at +1 s
    c.ack(dt=0.010)
    t_est = cap.now
    c.data(100, dt=0.001)
    s.data(500, dt=0.010)
    c.ack(dt=0.0002)
    close_client_first(c, s, rtt=0.010)
    cap.write({
        "description": "The server's first SYN-ACK never reaches the client (no ACK); it is retransmitted 1 s "
                       "later, answered, and the connection completes and closes normally, client first.",
        "flows": [conv.flow(final=FINAL_CLIENT_FIRST, transitions=NORMAL_CLIENT_FIRST,
                            anomalies=["retransmitted_synack"], anomalies_not=["half_open"])],
        "anomalies_must": ["retransmitted_synack"],
        "anomalies_must_not": ["half_open", "unanswered_syn", "invalid_transition", "retransmitted_syn"],
        "at": [
            {"t": rt(0.5), "host": "10.0.0.2", "states": {key(s, c): "SYN_RECEIVED"}},
            {"t": rt(t_est + 0.006), "host": "10.0.0.2", "states": {key(s, c): "ESTABLISHED"}},  # ACK + 5 ms to the server
        ],
    })


def build_syn_sent_pile():
    cap = Capture("syn_sent_pile")
    convs = []
    for i in range(30):          # an app server calling a blackholed backend: 30 connects in 0.3 s
        conv = Conversation(cap, ("10.0.0.7", 50000 + i), ("10.0.0.50", 5432), 0x1000 + i * 7919, 0)
        convs.append(conv)
        cap.set(i * 0.01)
        conv.c.syn()
    for k in (1.0, 2.0, 3.0):    # Linux's linear SYN retries, 1 s apart
        for i, conv in enumerate(convs):
            cap.set(k + i * 0.01)
            conv.c.syn()
    cap.write({
        "description": "Host 10.0.0.7 opens 30 connections to 10.0.0.50:5432 within 0.3 s; nothing answers, "
                       "every SYN is retransmitted at +1, +2, +3 s: a SYN_SENT pile on 10.0.0.7 (the called "
                       "service is down or blackholed).",
        "counts": {"flows": 30, "client_states_at_end": {"SYN_SENT": 30},
                   "anomaly_counts": {"syn_sent_pile": 1, "unanswered_syn": 30}},
        "anomalies_must": ["syn_sent_pile", "unanswered_syn"],
        "anomalies_must_not": ["port_scan", "syn_flood", "rejected", "half_open"],
        "at": [{"t": rt(2.5), "host": "10.0.0.7", "state_counts": {"SYN_SENT": 30}}],
    })


def build_last_ack_pile():
    cap = Capture("last_ack_pile")
    for i in range(15):          # load-test clients killed mid-close: the servers' FINs are never ACKed
        conv = Conversation(cap, ("10.0.1.%d" % (10 + i), 40000 + i), ("10.0.0.2", 8080), 0x2000 + i * 104729,
                            0x9000 + i * 15485863)
        c, s = conv.sides
        cap.set(i * 0.02)
        open_conn(c, s)
        c.data(50, dt=0.001)
        s.data(200, dt=0.005)
        c.ack(dt=0.0002)
        c.fin(dt=0.001)
        s.ack(dt=0.040)
        s.fin(dt=0.001)
        for rto in (0.2, 0.4, 0.8, 1.6):
            s.send("FA", seq=s.nxt - 1, dt=rto)
    cap.sort_by_time()
    cap.write({
        "description": "15 clients close first and vanish right after their FIN is ACKed: the server (10.0.0.2) "
                       "closes too and retransmits each FIN with back-off (+0.2, +0.4, +0.8, +1.6 s); no final "
                       "ACK ever comes: a LAST_ACK pile on the server.",
        "counts": {"flows": 15, "server_states_at_end": {"LAST_ACK": 15},
                   "anomaly_counts": {"last_ack_pile": 1, "last_ack_unacked": 15}},
        "anomalies_must": ["last_ack_pile", "last_ack_unacked"],
        "anomalies_must_not": ["syn_flood", "rst_abort", "invalid_transition"],
    })


def build_fin_wait_1_pile():
    cap = Capture("fin_wait_1_pile")
    sides = []
    for i in range(15):          # a server shut down under load while its clients had become unreachable
        conv = Conversation(cap, ("10.0.2.%d" % (10 + i), 41000 + i), ("10.0.0.3", 443), 0x3000 + i * 7907,
                            0x7000 + i * 9973)
        c, s = conv.sides
        cap.set(i * 0.01)
        open_conn(c, s)
        c.data(80, dt=0.001)
        s.data(300, dt=0.005)
        c.ack(dt=0.0002)
        sides.append(s)
    for i, s in enumerate(sides):
        cap.set(2.0 + i * 0.001)
        s.fin()
        for rto in (0.2, 0.4, 0.8, 1.6, 3.2):
            s.send("FA", seq=s.nxt - 1, dt=rto)
    cap.sort_by_time()
    cap.write({
        "description": "15 clients of 10.0.0.3:443 become unreachable; at +2 s the server shuts down and sends a "
                       "FIN on each connection, retransmitted with back-off up to +8.2 s, never ACKed: a "
                       "FIN_WAIT_1 pile on the server (the field guide's 'server shutdown' case).",
        "counts": {"flows": 15, "server_states_at_end": {"FIN_WAIT_1": 15},
                   "client_states_at_end": {"ESTABLISHED": 15},
                   "anomaly_counts": {"fin_wait_1_pile": 1, "fin_wait_1_unacked": 15}},
        "anomalies_must": ["fin_wait_1_pile", "fin_wait_1_unacked"],
        "anomalies_must_not": ["syn_flood", "rst_abort", "invalid_transition", "stuck_close_wait"],
    })


BUILDERS = [
    build_simultaneous_open, build_out_of_window_rst, build_data_after_fin, build_backwards_ts,
    build_midstream, build_midstream_synack, build_port_scan, build_syn_flood_spoofed, build_ipv6_normal,
    build_retransmitted_syn, build_invalid_transition, build_time_wait_pile, build_tw_reuse, build_windows_tw,
    build_retransmitted_synack, build_syn_sent_pile, build_last_ack_pile, build_fin_wait_1_pile,
]


def main(argv: list[str]) -> int:
    wanted = set(argv)
    for b in BUILDERS:
        name = b.__name__.removeprefix("build_")
        if wanted and name not in wanted:
            continue
        b()
        print(f"wrote {name}.pcap + {name}.expect.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
