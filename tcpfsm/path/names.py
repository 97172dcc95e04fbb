"""Host names learned from DNS answers in the capture itself (A, AAAA, CNAME chains, PTR): never a live lookup.

Owns the second, light pass over the capture file that reads DNS responses (UDP port 53) and the
address -> name table the text views print beside addresses (`-n` turns it off, as with netstat). The
decoder hands the tracker TCP only, so this pass reads the file again with dpkt; it is only run by the
views that print names. An address gets the name the client asked for (the first name of a CNAME chain);
PTR answers name the address they reverse. Must not: resolve anything over the network, or fail the view:
a file it cannot read again (stdin) just gives no names.
"""
from __future__ import annotations

import gzip
import ipaddress
import socket

MAX_NAMES = 100_000           # addresses remembered (bounded memory on hostile captures)
_LINKS = {1: "eth", 113: "sll", 276: "sll2", 101: "raw", 12: "raw", 14: "raw", 228: "raw4", 229: "raw6",
          0: "null", 108: "null"}


class Names:
    """Address -> host name, from the capture's DNS answers."""

    def __init__(self, table: dict[str, str] | None = None):
        self.table = dict(table or {})

    def name(self, ip: str) -> str | None:
        return self.table.get(ip)

    def label(self, ip: str) -> str:
        n = self.table.get(ip)
        return ip if n is None else f"{n} ({ip})"

    def label_hostport(self, hp: str) -> str:
        """"10.0.0.2:80" -> "db.example.com[10.0.0.2]:80" when the address has a name."""
        ip, sep, port = hp.rpartition(":")
        bare = ip[1:-1] if ip.startswith("[") else ip
        n = self.table.get(bare)
        return hp if n is None else f"{n}[{bare}]{sep}{port}"


def names_of(an) -> Names:
    """The names in the analysed capture's DNS answers (empty for stdin or a file that cannot be reread)."""
    path = an.info.path
    if not path or path == "-":
        return Names()
    try:
        return Names(read_dns_names(path))
    except (OSError, ValueError, EOFError):
        return Names()


def _open(path: str):
    f = open(path, "rb")
    if f.read(2) == b"\x1f\x8b":
        f.close()
        return gzip.open(path, "rb")
    f.seek(0)
    return f


def _payload(link: str, buf: bytes):
    """The IP packet of a record (dpkt object), or None."""
    import dpkt
    try:
        if link == "eth":
            p = dpkt.ethernet.Ethernet(buf).data
        elif link == "sll":
            p = dpkt.sll.SLL(buf).data
        elif link == "sll2":
            p = dpkt.sll2.SLL2(buf).data
        elif link == "null":
            p = buf[4:]
            p = dpkt.ip6.IP6(p) if p[:1] and p[0] >> 4 == 6 else dpkt.ip.IP(p)
        else:
            p = dpkt.ip6.IP6(buf) if buf[:1] and buf[0] >> 4 == 6 else dpkt.ip.IP(buf)
    except (dpkt.UnpackError, IndexError, ValueError, AttributeError):
        return None
    return p if isinstance(p, (dpkt.ip.IP, dpkt.ip6.IP6)) else None


def _ip(rr) -> str | None:
    import dpkt
    if rr.type == dpkt.dns.DNS_A and len(rr.rdata) == 4:
        return socket.inet_ntop(socket.AF_INET, rr.rdata)
    if rr.type == dpkt.dns.DNS_AAAA and len(rr.rdata) == 16:
        return str(ipaddress.IPv6Address(rr.rdata))
    return None


def _reverse(name: str) -> str | None:
    """"4.3.2.1.in-addr.arpa" -> "1.2.3.4" (and ip6.arpa nibbles)."""
    n = name.rstrip(".").lower()
    try:
        if n.endswith(".in-addr.arpa"):
            return str(ipaddress.IPv4Address(".".join(reversed(n[:-13].split(".")))))
        if n.endswith(".ip6.arpa"):
            nib = "".join(reversed(n[:-9].split(".")))
            return str(ipaddress.IPv6Address(int(nib, 16))) if len(nib) == 32 else None
    except ValueError:
        return None
    return None


def read_dns_names(path: str) -> dict[str, str]:
    import dpkt
    table: dict[str, str] = {}
    with _open(path) as f:
        head = f.read(4)
        f.seek(0)
        reader = dpkt.pcapng.Reader(f) if head == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)
        link = _LINKS.get(reader.datalink())
        if link is None:
            return table
        for _ts, buf in reader:
            ip = _payload(link, buf)
            if ip is None:
                continue
            udp = ip.data
            if not isinstance(udp, dpkt.udp.UDP) or udp.sport != 53:
                continue
            try:
                dns = dpkt.dns.DNS(udp.data)
            except (dpkt.UnpackError, IndexError, ValueError):
                continue
            if dns.qr != dpkt.dns.DNS_R or not dns.qd:
                continue
            asked = dns.qd[0].name
            alias = {}                               # canonical name -> the name asked (CNAME chain)
            for rr in dns.an:
                if rr.type == dpkt.dns.DNS_CNAME:
                    alias[rr.cname.lower()] = alias.get(rr.name.lower(), rr.name)
            for rr in dns.an:
                addr = _ip(rr)
                if addr is not None and len(table) < MAX_NAMES:
                    table.setdefault(addr, alias.get(rr.name.lower(), rr.name) if rr.name else asked)
                elif rr.type == dpkt.dns.DNS_PTR:
                    addr = _reverse(rr.name)
                    if addr is not None and len(table) < MAX_NAMES:
                        table.setdefault(addr, rr.ptrname)
    return table
