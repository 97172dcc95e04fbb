#!/usr/bin/env python3
"""Craft the captures that show Zeek's conn.log rules, with the values Zeek's logic gives.

    python captures/zeek/craft_zeek.py        # writes captures/zeek/*.pcap + *.expect.json

Deterministic (fixed times, ISNs, IP ids), built with captures/craft.py's Conversation helper.
Each expectation lists the conn.log lines in ts order: originator, responder, conn_state and
history (and a few other columns where the rule is about them). README.md explains each one.
"""
from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from craft import M32, Capture, Conversation, open_conn, close_client_first  # noqa: E402

C, S, X = "10.1.0.1", "10.2.0.2", "10.3.0.3"


def write(cap: Capture, conns: list[dict], note: str) -> None:
    pcap = HERE / f"{cap.name}.pcap"
    with open(pcap, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for ts, frame in cap.records:
            f.write(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(frame), len(frame)))
            f.write(frame)
    doc = {"capture": pcap.name, "records": len(cap.records), "note": note, "conns": conns}
    (HERE / f"{cap.name}.expect.json").write_text(json.dumps(doc, indent=2) + "\n")


def exp(orig: str, resp: str, state: str, history: str, **extra) -> dict:
    return {"orig": orig, "resp": resp, "conn_state": state, "history": history, **extra}


def est(side) -> None:
    """Mid-stream: the side is past its SYN (nothing sent on the wire)."""
    side.nxt = (side.isn + 1) & M32


def conv(cap, cport, sport, cip=C, sip=S, isn=0x10000000):
    return Conversation(cap, (cip, cport), (sip, sport), isn + cport * 0x1000, 0x70000000 + sport * 0x1000).sides


# --------------------------------------------------------------------------- conn_state values


def build_states():
    """One connection per conn_state value that needs a SYN (S0 S1 SF REJ S2 S3 RSTO RSTR RSTOS0 SH)."""
    cap = Capture("zeek_states")
    out = []
    c, s = conv(cap, 41001, 5001)          # S0: SYN, retransmitted once, never answered
    c.syn(); c.syn(dt=1.0)
    out.append(exp(c.addr, s.addr, "S0", "S", orig_pkts=2, resp_pkts=0))
    cap.wait(10)
    c, s = conv(cap, 41002, 5002)          # S1: established, data, never closed
    open_conn(c, s); c.data(100, dt=0.01); s.data(200, dt=0.01); c.ack(dt=0.01)
    out.append(exp(c.addr, s.addr, "S1", "ShADd", orig_bytes=100, resp_bytes=200))
    cap.wait(10)
    c, s = conv(cap, 41003, 5003)          # SF: the normal life
    open_conn(c, s); c.data(100, dt=0.01); s.data(300, dt=0.01); c.ack(dt=0.01); close_client_first(c, s)
    out.append(exp(c.addr, s.addr, "SF", "ShADdFaf", orig_bytes=100, resp_bytes=300, missed_bytes=0,
                   orig_pkts=6, resp_pkts=4))
    cap.wait(10)
    c, s = conv(cap, 41004, 5004)          # REJ: SYN answered by RST-ACK
    c.syn(); s.send("RA", seq=0, ack=c.nxt, win=0, dt=0.001)
    out.append(exp(c.addr, s.addr, "REJ", "Sr"))
    cap.wait(10)
    c, s = conv(cap, 41005, 5005)          # S2: established, originator's FIN, nothing after
    open_conn(c, s); c.data(50, dt=0.01); s.ack(dt=0.01); c.fin(dt=0.01)
    out.append(exp(c.addr, s.addr, "S2", "ShADaF"))
    cap.wait(10)
    c, s = conv(cap, 41006, 5006)          # S3: established, responder's FIN, nothing after
    open_conn(c, s); s.data(50, dt=0.01); c.ack(dt=0.01); s.fin(dt=0.01)
    out.append(exp(c.addr, s.addr, "S3", "ShAdf"))
    cap.wait(10)
    c, s = conv(cap, 41007, 5007)          # RSTO: established, originator aborts
    open_conn(c, s); c.data(10, dt=0.01); s.ack(dt=0.01); c.rst(dt=0.01)
    out.append(exp(c.addr, s.addr, "RSTO", "ShADaR"))
    cap.wait(10)
    c, s = conv(cap, 41008, 5008)          # RSTR: established, responder aborts
    open_conn(c, s); c.data(10, dt=0.01); s.rst(dt=0.01)
    out.append(exp(c.addr, s.addr, "RSTR", "ShADr"))
    cap.wait(10)
    c, s = conv(cap, 41009, 5009)          # RSTOS0: SYN then the originator's own RST, no SYN-ACK
    c.syn(); c.rst(dt=0.5, ack=False)
    out.append(exp(c.addr, s.addr, "RSTOS0", "SR"))
    cap.wait(10)
    c, s = conv(cap, 41010, 5010)          # SH: SYN then FIN from the originator, no answer
    c.syn(); c.fin(dt=0.5)
    out.append(exp(c.addr, s.addr, "SH", "SF"))
    cap.wait(10)
    c, s = conv(cap, 41011, 5011)          # RSTO with a SYN-ACK seen is not RSTOS0 (responder established)
    open_conn(c, s); c.rst(dt=0.01)
    out.append(exp(c.addr, s.addr, "RSTO", "ShAR"))
    write(cap, out, "every conn_state reached from a SYN")


def build_no_syn():
    """The outcomes that need no SYN: SH, SHR, RSTRH, OTH, and SF for a midstream flow with both FINs."""
    cap = Capture("zeek_no_syn")
    out = []
    c, s = conv(cap, 42001, 5101); est(c)
    c.data(100); c.fin(dt=0.01)              # SH without SYN: one-sided client data then FIN
    out.append(exp(c.addr, s.addr, "SH", "DF"))
    cap.wait(10)
    c, s = conv(cap, 42002, 80); est(s); est(c)
    s.data(300); s.fin(dt=0.01)              # SHR: server (port 80, flipped to responder) data + FIN only
    out.append(exp(c.addr, s.addr, "SHR", "^df"))
    cap.wait(10)
    c, s = conv(cap, 42003, 80)
    s.synack(); s.rst(dt=0.2)                # RSTRH: SYN-ACK then RST from the responder, no SYN seen
    out.append(exp(c.addr, s.addr, "RSTRH", "^hr"))
    cap.wait(10)
    c, s = conv(cap, 42004, 5104); est(c); est(s)
    c.data(100); s.ack(dt=0.01); s.data(50, dt=0.01); c.ack(dt=0.01)   # OTH: midstream, never closed
    out.append(exp(c.addr, s.addr, "OTH", "DadA"))
    cap.wait(10)
    c, s = conv(cap, 42005, 5105); est(c); est(s)
    c.data(100); s.ack(dt=0.01); c.fin(dt=0.01); s.fin(dt=0.01); c.ack(dt=0.01)   # SF without a handshake
    out.append(exp(c.addr, s.addr, "SF", "DaFfA"))
    cap.wait(10)
    c, s = conv(cap, 42006, 5106); est(c)
    c.rst()                                  # a lone RST: OTH (not RSTOS0: no S in the history)
    out.append(exp(c.addr, s.addr, "OTH", "R"))
    cap.wait(10)
    c, s = conv(cap, 42007, 5107); est(c)
    c.data(20); c.rst(dt=0.01)               # data then RST, responder silent: OTH
    out.append(exp(c.addr, s.addr, "OTH", "DR"))
    cap.wait(10)
    c, s = conv(cap, 42008, 5108); est(c); est(s)
    s.data(20); s.rst(dt=0.01)               # midstream responder... is the first sender: orig, OTH
    out.append(exp(s.addr, c.addr, "OTH", "DR"))
    write(cap, out, "conn_state values reached without a SYN")


# --------------------------------------------------------------------------- orientation


def build_flips():
    cap = Capture("zeek_flips")
    out = []
    c, s = conv(cap, 43001, 443); est(c); est(s)
    s.data(500); c.ack(dt=0.01)              # first packet from a likely server port (443): flipped
    out.append(exp(c.addr, s.addr, "OTH", "^dA"))
    cap.wait(10)
    c, s = conv(cap, 8080, 80); est(c); est(s)
    s.data(100); c.ack(dt=0.01)              # both ports likely, non-SYN, source 80 < 8080: flipped
    out.append(exp(c.addr, s.addr, "OTH", "^dA"))
    cap.wait(10)
    c, s = conv(cap, 80, 8080, cip=X); est(c); est(s)
    s.data(100); c.ack(dt=0.01)              # both likely, source 8080 > 80: kept (8080 side originates)
    out.append(exp(s.addr, c.addr, "OTH", "Da"))
    cap.wait(10)
    c, s = conv(cap, 6669, 80); est(c)
    s.synack(); c.ack(dt=0.01); c.data(40, dt=0.01); s.ack(dt=0.01)
    # SYN-ACK from 80 to 6669: both likely and a SYN, so no flip at first; the ACK after the lone
    # SYN-ACK flips it on the second packet (Zeek >= 5.1), as if the SYN-ACK came from the responder.
    out.append(exp(c.addr, s.addr, "OTH", "^hADa"))
    cap.wait(10)
    c, s = conv(cap, 43005, 5205)
    est(c); s.synack(); c.send("S", seq=c.isn, win=c.syn_win, options=c.syn_opts, dt=0.0005); c.ack(dt=0.01); c.data(10, dt=0.01); s.ack(dt=0.01)
    # SYN-ACK seen before its SYN (capture reordering), ports not likely: the SYN with the sequence number
    # the SYN-ACK acknowledged flips the roles in the state machine and establishes both sides.
    out.append(exp(c.addr, s.addr, "S1", "Hs^ADa"))
    cap.wait(10)
    c, s = conv(cap, 43006, 5206)
    s.synack(); cap.wait(0.01)               # a lone SYN-ACK from a non-likely port: not flipped (stealth scan)
    out.append(exp(s.addr, c.addr, "OTH", "H"))
    write(cap, out, "Zeek's orientation (flip) rules")


# --------------------------------------------------------------------------- splitting


def build_splits():
    cap = Capture("zeek_splits")
    out = []
    c, s = conv(cap, 44001, 5301)
    c.syn(); c.syn(dt=1.0); c.syn(dt=2.0); c.syn(dt=4.0)
    # the attempt timer (5 s after the first SYN) ends the first connection; the SYN at +7 s starts another
    out.append(exp(c.addr, s.addr, "S0", "S", orig_pkts=3))
    out.append(exp(c.addr, s.addr, "S0", "S", orig_pkts=1))
    cap.wait(20)
    c, s = conv(cap, 44002, 5302)
    open_conn(c, s); c.data(10, dt=0.01); s.ack(dt=0.01)
    cap.wait(400)                            # idle past tcp_inactivity_timeout (5 min)
    c.data(10); s.ack(dt=0.01)
    out.append(exp(c.addr, s.addr, "S1", "ShADa"))
    out.append(exp(c.addr, s.addr, "OTH", "Da"))
    cap.wait(20)
    c, s = conv(cap, 44003, 5303)
    open_conn(c, s); c.data(10, dt=0.01); s.ack(dt=0.01); close_client_first(c, s)
    c.ack(dt=1.0)                            # a late ACK inside the 5 s close delay: same connection
    cap.wait(10)
    c.ack()                                  # ... and one after it: a new (midstream) connection
    out.append(exp(c.addr, s.addr, "SF", "ShADaFf", orig_pkts=6))
    out.append(exp(c.addr, s.addr, "OTH", "A"))
    cap.wait(20)
    conv_ = Conversation(cap, (C, 44004), (S, 5304), 0x11111111, 0x22222222)
    c, s = conv_.sides
    open_conn(c, s); c.data(10, dt=0.01); s.ack(dt=0.01); close_client_first(c, s)
    c2, s2 = Conversation(cap, (C, 44004), (S, 5304), 0x33333333, 0x44444444).sides
    open_conn(c2, s2, rtt=0.01)              # port reuse 0.1 s later with a new ISN: a new connection
    c2.data(10, dt=0.01); s2.ack(dt=0.01)
    out.append(exp(c.addr, s.addr, "SF", "ShADaFf"))
    out.append(exp(c.addr, s.addr, "S1", "ShADa"))
    cap.wait(20)
    c, s = conv(cap, 44005, 5305)
    open_conn(c, s); c.data(10, dt=0.01); s.ack(dt=0.01)
    c.syn(dt=0.5)                             # same ISN retransmitted inside an open connection: not a reuse
    out.append(exp(c.addr, s.addr, "S1", "ShADa"))
    write(cap, out, "Zeek's connection splitting")


# --------------------------------------------------------------------------- history letters


def build_history():
    cap = Capture("zeek_history")
    out = []
    c, s = conv(cap, 45001, 5401)
    open_conn(c, s)
    for i in range(11):                       # 1 data segment + 10 retransmissions: T at the 1st and 10th
        c.send("PA", seq=c.nxt, data=b"x" * 100, dt=0.01)
    c.nxt = (c.nxt + 100) & M32
    s.ack(dt=0.01)
    for i in range(10):                       # 10 zero-window ACKs from the responder: w at the 1st and 10th
        s.send("A", win=0, dt=0.01)
    out.append(exp(c.addr, s.addr, "S1", "ShADTTaww", orig_bytes=100))
    cap.wait(10)
    c, s = conv(cap, 45002, 5402)
    open_conn(c, s)
    c.data(100, dt=0.01)
    c.nxt = (c.nxt + 200) & M32               # 200 bytes never captured
    c.data(100, dt=0.01)
    s.ack(dt=0.01)                            # acks all 400: a 200-byte content gap
    out.append(exp(c.addr, s.addr, "S1", "ShADaG", missed_bytes=200, orig_bytes=400))
    cap.wait(10)
    c, s = conv(cap, 45003, 5403)
    open_conn(c, s); c.data(10, dt=0.01); s.ack(dt=0.01)
    c.send("FRA", dt=0.01)                    # FIN+RST together: I (the RST makes the originator reset)
    out.append(exp(c.addr, s.addr, "RSTO", "ShADaI"))
    cap.wait(10)
    c, s = conv(cap, 45004, 5404)
    c.send("SF", seq=c.isn)                   # SYN+FIN: Q (and no state change from the SYN)
    out.append(exp(c.addr, s.addr, "SH", "Q"))
    cap.wait(10)
    c, s = conv(cap, 45005, 5405)
    open_conn(c, s); c.data(10, dt=0.01); s.ack(dt=0.01)
    c.fin(dt=0.01); c.send("FA", seq=c.nxt - 1, dt=0.2)        # FIN retransmitted: one F
    c.send("FA", seq=c.nxt + 5, dt=0.2)                        # FIN with another sequence number: F again
    out.append(exp(c.addr, s.addr, "S2", "ShADaFF"))
    write(cap, out, "history letters")


def main() -> int:
    for build in (build_states, build_no_syn, build_flips, build_splits, build_history):
        build()
    return 0


if __name__ == "__main__":
    sys.exit(main())
