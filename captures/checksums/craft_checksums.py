#!/usr/bin/env python3
"""Craft the TCP checksum captures (scapy), byte-reproducible: fixed times, ISNs, IP ids, MACs.

    python captures/checksums/craft_checksums.py      # writes captures/checksums/*.pcap

* mixed_v4.pcap / mixed_v6.pcap - two connections, client 40000 / 40001 -> server port 80:
    conn A: SYN, SYN-ACK, ACK (good); 100 bytes of data with a BAD checksum, the same data
            retransmitted (good), the server's ACK (good), then the client's FIN with a BAD checksum
            (never acknowledged: the server never got it) - the capture ends there.
    conn B: handshake (good), then the server sends the same 50 bytes 10 times, all with a BAD checksum
            (Zeek's c at the 1st and the 10th), then a good RST from the server.
  Bad checksums are the right one XOR 0x5a5a.
* snaplen.pcap - conn A of mixed_v4 recorded with snaplen 70: the two 154-byte data segments (the bad
  one and its good retransmission) are cut, so unverifiable; the other frames (54-66 bytes) are whole
  and verified (the FIN still bad).
* offload.pcap - a normal connection captured on the client with checksum offload: every segment the
  client sends carries the partial checksum Linux leaves for the NIC (the folded pseudo-header sum,
  not complemented; the NIC adds the rest), the server's segments are good. Client closes first:
  SYN, SYN-ACK, ACK, data c->s, ACK, data s->c, ACK, FIN c->s, ACK, FIN s->c, ACK.
"""
from __future__ import annotations

import struct
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

HERE = Path(__file__).resolve().parent
BASE = 1_700_000_000
MAC_C, MAC_S = "02:00:00:00:00:01", "02:00:00:00:00:02"
ADDR = {4: ("192.0.2.1", "192.0.2.2"), 6: ("2001:db8::1", "2001:db8::2")}
BAD_XOR = 0x5A5A


class Cap:
    def __init__(self, fam: int):
        self.fam = fam
        self.frames: list[tuple[int, bytes]] = []
        self.t = 0                         # µs since BASE
        self.ipid = 1

    def pkt(self, c2s: bool, sport: int, dport: int, flags: str, seq: int, ack: int, data: bytes = b"",
            csum: str = "good", opts=None, dt: int = 1000) -> None:
        a, b = ADDR[self.fam] if c2s else ADDR[self.fam][::-1]
        eth = Ether(src=MAC_C if c2s else MAC_S, dst=MAC_S if c2s else MAC_C)
        tcp = TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=64240, options=opts or [])
        if self.fam == 4:
            net = IP(src=a, dst=b, id=self.ipid, flags="DF", ttl=64)
            self.ipid += 1
        else:
            net = IPv6(src=a, dst=b, hlim=64)
        p = eth / net / tcp / Raw(data) if data else eth / net / tcp
        raw = bytes(p)
        if csum != "good":
            l3 = 14 + (20 if self.fam == 4 else 40)
            good = struct.unpack_from("!H", raw, l3 + 16)[0]
            if csum == "bad":
                v = good ^ BAD_XOR
            else:                          # "partial": what checksum offload leaves in the capture
                v = pseudo_sum(self.fam, a, b, len(raw) - l3)
            raw = raw[:l3 + 16] + struct.pack("!H", v) + raw[l3 + 18:]
        self.t += dt
        self.frames.append((self.t, raw))

    def write(self, name: str, snaplen: int = 262144) -> None:
        with open(HERE / name, "wb") as f:
            f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1))
            for t, raw in self.frames:
                cap = raw[:snaplen]
                f.write(struct.pack("<IIII", BASE + t // 1_000_000, t % 1_000_000, len(cap), len(raw)))
                f.write(cap)


def pseudo_sum(fam: int, a: str, b: str, tcplen: int) -> int:
    """Folded ones' complement sum of the TCP pseudo-header (not complemented), as Linux stores it for
    CHECKSUM_PARTIAL (tcp_v4_send_check: th->check = ~tcp_v4_check(len, saddr, daddr, 0))."""
    import ipaddress
    raw = ipaddress.ip_address(a).packed + ipaddress.ip_address(b).packed
    s = sum(struct.unpack(f"!{len(raw) // 2}H", raw)) + 6 + tcplen
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


SYN_OPTS = [("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]


def conn_a(cap: Cap, port: int = 40000) -> None:
    c, s = 0x1000, 0x9000
    cap.pkt(True, port, 80, "S", c, 0, opts=SYN_OPTS)
    cap.pkt(False, 80, port, "SA", s, c + 1, opts=SYN_OPTS)
    cap.pkt(True, port, 80, "A", c + 1, s + 1)
    cap.pkt(True, port, 80, "PA", c + 1, s + 1, b"x" * 100, csum="bad")
    cap.pkt(True, port, 80, "PA", c + 1, s + 1, b"x" * 100, dt=200_000)     # retransmission, good
    cap.pkt(False, 80, port, "A", s + 1, c + 101)
    cap.pkt(True, port, 80, "FA", c + 101, s + 1, csum="bad", dt=500_000)


def conn_b(cap: Cap, port: int = 40001) -> None:
    c, s = 0x2000, 0xA000
    cap.pkt(True, port, 80, "S", c, 0, opts=SYN_OPTS)
    cap.pkt(False, 80, port, "SA", s, c + 1, opts=SYN_OPTS)
    cap.pkt(True, port, 80, "A", c + 1, s + 1)
    for _ in range(10):
        cap.pkt(False, 80, port, "PA", s + 1, c + 1, b"y" * 50, csum="bad", dt=200_000)
    cap.pkt(False, 80, port, "RA", s + 1, c + 1)


def offload(cap: Cap, port: int = 40002) -> None:
    c, s = 0x3000, 0xB000
    cap.pkt(True, port, 80, "S", c, 0, opts=SYN_OPTS, csum="partial")
    cap.pkt(False, 80, port, "SA", s, c + 1, opts=SYN_OPTS)
    cap.pkt(True, port, 80, "A", c + 1, s + 1, csum="partial")
    cap.pkt(True, port, 80, "PA", c + 1, s + 1, b"GET / HTTP/1.0\r\n\r\n", csum="partial")
    cap.pkt(False, 80, port, "A", s + 1, c + 19)
    cap.pkt(False, 80, port, "PA", s + 1, c + 19, b"z" * 300)
    cap.pkt(True, port, 80, "A", c + 19, s + 301, csum="partial")
    cap.pkt(True, port, 80, "FA", c + 19, s + 301, csum="partial", dt=100_000)
    cap.pkt(False, 80, port, "A", s + 301, c + 20)
    cap.pkt(False, 80, port, "FA", s + 301, c + 20, dt=100_000)
    cap.pkt(True, port, 80, "A", c + 20, s + 302, csum="partial")


def main() -> None:
    for fam in (4, 6):
        cap = Cap(fam)
        conn_a(cap)
        cap.t += 1_000_000
        conn_b(cap)
        cap.write(f"mixed_v{fam}.pcap")
    cap = Cap(4)
    conn_a(cap)
    cap.write("snaplen.pcap", snaplen=70)
    cap = Cap(4)
    offload(cap)
    cap.write("offload.pcap")


if __name__ == "__main__":
    main()
