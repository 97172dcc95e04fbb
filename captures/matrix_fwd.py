"""The wire of the matrix recorder: a delay line with a tap, run inside the middle namespace.

Owns: copying Ethernet frames between the middle namespace's two interfaces
(AF_PACKET, no dependencies), holding each one for the client leg's and the
server leg's one-way delay, writing the pcap at the chosen tap position, and
dropping chosen frames before or after the tap.  It must not decide anything
about TCP states: captures/matrix.py scripts the scenarios and takes the
truth with ss.

Path of a frame (c2s; s2c is the mirror image)::

    client --[arrive]-- client leg (dc) --[middle]-- server leg (ds) --[deliver]--> server
    tap "client" = at arrive, "middle" = after dc, "server" = at deliver

Speaks JSON lines on stdin/stdout like captures/record.py's socket agent
(every reply carries "ok" and "t"), so record.Agent drives it unchanged.
The first command must be "config".  Stdin EOF (parent gone), "quit" or
the configured max_s end it; the pcap is flushed per frame and the frame
log is written on "log" and on exit.
"""
import heapq
import json
import os
import random
import select
import socket
import struct
import sys
import time
from array import array

ETH_P_ALL = 3
PACKET_OUTGOING = 4
FIN, SYN, RST, PSH, ACK = 1, 2, 4, 8, 16
MAX_FRAMES = 200000          # bound on the frame log (and so on memory)

cfg = {}
socks = {}                   # side -> AF_PACKET socket ("c" faces the client, "s" the server)
heap = []                    # (due, seq, kind, frame record)
seq_no = 0
rules = []
fin_end = {}                 # (src, sport, dst, dport) -> seq just after that sender's FIN
frames = []                  # one record per frame: the log the recorder checks quiet moments with
last_event = 0.0
tap_on = False
pcap = None
stats = {"frames": 0, "tapped": 0, "dropped_before": 0, "dropped_after": 0, "late_max_ms": 0.0,
         "late_sum_ms": 0.0, "late_n": 0, "non_ipv4": 0}


def csum_fold(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(array("H", data))      # native order: the folded complement comes out in the same order
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return struct.pack("=H", ~s & 0xFFFF)


def parse(fr):
    """IPv4/TCP fields of an Ethernet frame, or None."""
    if len(fr) < 54 or fr[12:14] != b"\x08\x00" or fr[23] != 6:
        return None
    ihl = (fr[14] & 15) * 4
    tot = struct.unpack_from("!H", fr, 16)[0]
    to = 14 + ihl
    if len(fr) < to + 20:
        return None
    sp, dp, sq, ak = struct.unpack_from("!HHII", fr, to)
    doff = (fr[to + 12] >> 4) * 4
    return {"src": socket.inet_ntoa(fr[26:30]), "dst": socket.inet_ntoa(fr[30:34]), "sport": sp, "dport": dp,
            "seq": sq, "ack": ak, "flags": fr[to + 13], "len": max(0, tot - ihl - doff), "to": to, "tot": tot}


def fix_tcp_csum(fr, p):
    """The sender's veth leaves CHECKSUM_PARTIAL (only the pseudo-header sum) in the frame; a frame
    re-sent from a packet socket is checked in full by the receiver, so complete it here."""
    to, tot = p["to"], p["tot"]
    seg = bytearray(fr[to:14 + tot])
    seg[16:18] = b"\0\0"
    pseudo = fr[26:34] + struct.pack("!BBH", 0, 6, tot - (to - 14))
    c = csum_fold(pseudo + bytes(seg))
    return fr[:to + 16] + c + fr[to + 18:]


def matches(rule, d, p):
    if rule["dir"] != d or p is None:
        return False
    if rule.get("count") is not None and rule["count"] <= 0:
        return False
    f = p["flags"]
    if f & rule.get("flags_all", 0) != rule.get("flags_all", 0) or f & rule.get("flags_none", 0):
        return False
    if rule.get("acks_fin"):
        end = fin_end.get((p["dst"], p["dport"], p["src"], p["sport"]))
        if not (f & ACK and end is not None and p["ack"] == end):
            return False
    if rule.get("payload") is not None and bool(p["len"]) != rule["payload"]:
        return False
    return True


def tap_offset(d):
    """Seconds from a frame's arrival at the wire to the tap, and the total path delay."""
    first, second = (cfg["dc"], cfg["ds"]) if d == "c2s" else (cfg["ds"], cfg["dc"])
    near = "client" if d == "c2s" else "server"
    point = cfg["point"]
    off = 0.0 if point == near else first if point == "middle" else first + second
    return off, first + second


def push(due, kind, rec):
    global seq_no
    seq_no += 1
    heapq.heappush(heap, (due, seq_no, kind, rec))


def arrive(d, fr, now):
    global last_event
    p = parse(fr)
    if p is not None:
        fr = fix_tcp_csum(fr, p)
        if p["flags"] & FIN:
            fin_end[(p["src"], p["sport"], p["dst"], p["dport"])] = (p["seq"] + p["len"] + 1) & 0xFFFFFFFF
    else:
        stats["non_ipv4"] += 1
    stats["frames"] += 1
    rec = {"dir": d, "t_in": now, "t_tap": None, "t_out": None, "drop": None, "fr": fr,
           "flags": p["flags"] if p else None, "len": p["len"] if p else None}
    for r in rules:
        if matches(r, d, p):
            rec["drop"] = r["where"]
            r["hits"] = r.get("hits", 0) + 1
            if r.get("count") is not None:
                r["count"] -= 1
            break
    if len(frames) < MAX_FRAMES:
        frames.append(rec)
    last_event = now
    off, total = tap_offset(d)
    if rec["drop"] != "before":
        push(now + off, "tap", rec)
    else:
        stats["dropped_before"] += 1
    if rec["drop"] is None:
        push(now + total, "deliver", rec)
    elif rec["drop"] == "after":
        stats["dropped_after"] += 1


def write_pcap(rec, now):
    if pcap is None or not tap_on or rec["dir"] not in cfg["tap_dirs"]:
        return
    fr = rec["fr"]
    incl = fr[:cfg["snaplen"]]
    sec = int(now)
    pcap.write(struct.pack("<IIII", sec, min(999999, int(round((now - sec) * 1e6))), len(incl), len(fr)) + incl)
    pcap.flush()
    rec["t_tap"] = now
    stats["tapped"] += 1


def run_due(now):
    global last_event
    while heap and heap[0][0] <= now:
        due, _, kind, rec = heapq.heappop(heap)
        t = time.time()
        late = (t - due) * 1000
        stats["late_max_ms"] = max(stats["late_max_ms"], late)
        stats["late_sum_ms"] += late
        stats["late_n"] += 1
        if kind == "tap":
            write_pcap(rec, t)
        elif kind == "deliver":
            out = socks["s" if rec["dir"] == "c2s" else "c"]
            try:
                out.send(rec["fr"])
            except OSError:
                pass
            rec["t_out"] = time.time()
        elif kind == "arrive":            # an injected frame (flood) entering from the client side
            arrive("c2s", rec, t)
        last_event = t


def flood(c):
    """SYNs from spoofed sources, injected as if they came from the client side of the wire."""
    rnd = random.Random(c.get("seed", 1))
    smac, dmac = bytes.fromhex(c["smac"].replace(":", "")), bytes.fromhex(c["dmac"].replace(":", ""))
    dst = socket.inet_aton(c["dst"])
    t0 = time.time()
    for i in range(c["n"]):
        src = socket.inet_aton("%s.%d" % (c["prefix"], 1 + i % 250))
        tcp = struct.pack("!HHIIBBHHH", rnd.randint(20000, 60000), c["dport"], rnd.getrandbits(32), 0,
                          6 << 4, SYN, 64240, 0, 0) + struct.pack("!BBH", 2, 4, 1460)
        tcp = tcp[:16] + csum_fold(src + dst + struct.pack("!BBH", 0, 6, len(tcp)) + tcp) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), rnd.getrandbits(16), 0x4000, 64, 6, 0, src, dst)
        ip = ip[:10] + csum_fold(ip) + ip[12:]
        push(t0 + i * c.get("pace", 0.002), "arrive", dmac + smac + b"\x08\x00" + ip + tcp)
    return {"t0": t0, "t1": t0 + (c["n"] - 1) * c.get("pace", 0.002)}


def write_log():
    with open(cfg["log"], "w") as fh:
        for r in frames:
            fh.write(json.dumps({k: r[k] for k in ("dir", "t_in", "t_tap", "t_out", "drop", "flags", "len")}) + "\n")


def command(c):
    global tap_on, pcap
    op = c["op"]
    if op == "ping":
        return {}
    if op == "config":
        cfg.update(c)
        cfg["tap_dirs"] = set(c.get("tap_dirs") or ("c2s", "s2c"))
        for side, ifn in (("c", c["cif"]), ("s", c["sif"])):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            s.bind((ifn, 0))
            s.setblocking(False)
            socks[side] = s
        pcap = open(c["pcap"], "wb")
        pcap.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, c["snaplen"], 1))
        pcap.flush()
        return {}
    if op == "tap":
        tap_on = bool(c["on"])
        return {}
    if op == "drop":
        r = {k: c[k] for k in ("id", "dir", "where") if k in c}
        for k in ("flags_all", "flags_none", "acks_fin", "payload", "count"):
            if k in c:
                r[k] = c[k]
        rules.append(r)
        return {}
    if op == "undrop":
        hits = [r.get("hits", 0) for r in rules if r["id"] == c["id"]]
        rules[:] = [r for r in rules if r["id"] != c["id"]]
        return {"hits": hits}
    if op == "rules":
        return {"rules": rules}
    if op == "idle":
        return {"last": last_event, "pending": len(heap)}
    if op == "flood":
        return flood(c)
    if op == "log":
        write_log()
        st = dict(stats)
        st["late_mean_ms"] = round(st.pop("late_sum_ms") / max(1, st["late_n"]), 3)
        st["late_max_ms"] = round(st["late_max_ms"], 3)
        return {"stats": st, "rules": rules}
    raise ValueError("unknown op %r" % op)


def reply(r):
    r["t"] = time.time()
    sys.stdout.write(json.dumps(r) + "\n")
    sys.stdout.flush()


def main():
    buf = b""
    t_start = time.time()
    while True:
        now = time.time()
        if cfg and now - t_start > cfg.get("max_s", 900):
            break
        timeout = max(0.0, heap[0][0] - now) if heap else 0.5
        rl = [0] + list(socks.values())
        r, _, _ = select.select(rl, [], [], timeout)
        now = time.time()
        for s in r:
            if s == 0:
                chunk = os.read(0, 65536)
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if not line.strip():
                        continue
                    c = json.loads(line)
                    if c.get("op") == "quit":
                        return
                    try:
                        out = command(c)
                        out["ok"] = True
                    except Exception as ex:
                        out = {"ok": False, "error": repr(ex)}
                    reply(out)
                continue
            side = "c" if s is socks.get("c") else "s"
            for _ in range(64):          # bounded batch per wake-up
                try:
                    fr, addr = s.recvfrom(65535)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue             # our own send on this interface
                arrive("c2s" if side == "c" else "s2c", fr, time.time())
        run_due(time.time())


if __name__ == "__main__":
    try:
        main()
    finally:
        if cfg:
            try:
                write_log()
            except Exception:
                pass
        if pcap is not None:
            pcap.close()
