"""Decode kernel: the common path of a capture record (link -> IPv4/IPv6 -> TCP) in one pass per record.

Owns: the per-record status codes (SKIP_REASONS), the common-path decoding of a group of located
records into preallocated column arrays, the TCP checksum word sum, locating pcap records, and the
rows' flow keys (`flow_keys`, wrapped by capture/keys.py for the tracker). Must not: allocate, read
files, decide what a flow is beyond its key, or decode anything unusual. Whatever it does not fully
understand gets status ST_SLOW and is decoded by reader._parse_one, the scalar reference parser
(the link types of capture/links.py, 802.3 LLC/SNAP, tunnels and tags, fragments of TCP datagrams,
IPv6 extension headers, UDP on a tunnel port or that may be Teredo). For every
record it does decode (or skip), the result must equal _parse_one's on the same bytes; tests check
that on every capture and on random records.

Cython pure-Python mode: this file runs as plain Python (the readable reference, TCPFSM_PURE=1) and
is compiled by setup.py into the extension `tcpfsm.capture._decode_c` (tcpfsm/_kernels.py picks
which one runs). Rules that keep the compiled form C-only: every integer is a declared C type (an
undeclared literal above 2**31 would make the arithmetic Python objects); 16/32-bit words are read by
_be16/_be32/_u32 (uncompiled: byte arithmetic, the top byte widened first; compiled: one load, byte-swapped
when _host_le(), a constant the C compiler folds); arrays are C-contiguous typed memoryviews ([::1]); the
record buffer is a const view (read-only mmaps and bytes); numpy bool columns are passed as uint8 views.
Every read is bounds-checked by hand against the record's captured length (boundscheck is off). Compiled-
only fast forms (memcpy of addresses, eight-byte checksum loads, flow_keys' 64-bit compare) sit beside
the byte loops they replace, under `if cython.compiled`; tests compare both forms.
"""
import sys

import cython

if cython.compiled:
    from cython.cimports.libc.string import memcpy, memset

_LO32 = cython.declare(cython.ulonglong, 0xFFFFFFFF)     # (a literal above 2**31 would be Python arithmetic)

# Stable skip reasons (keys of CaptureInfo.skipped); status code = index + 2 (0 decoded, 1 slow path).
SKIP_REASONS = (
    "unsupported_linktype",   # link type we do not decode
    "unknown_interface",      # pcapng packet block naming an interface with no IDB
    "truncated_link_header",  # record shorter than its link-layer header
    "arp",                    # ARP / RARP
    "non_ip",                 # any other ethertype / address family / 802.3 frame
    "truncated_ip_header",    # IP header (or IPv6 extension headers) cut by snaplen
    "malformed_ip",           # bad version, IHL < 5, total length < header, bad ext header
    "ip_fragment",            # non-first IP fragment (IPv4 offset != 0, IPv6 fragment offset != 0)
    "udp",
    "icmp",
    "icmpv6",
    "other_ip_proto",         # any other IP protocol (incl. ESP, IPv6 "no next header")
    "truncated_tcp_header",   # fewer than 20 TCP header bytes captured
    "malformed_tcp",          # data offset < 5 or larger than the IP payload
    "tunnel_error",           # a recognised encapsulation that is truncated, malformed or an unsupported
                              # variant (GRE version 1 / routing, more than 16 MPLS labels)
    "tunnel_too_deep",        # encapsulations nested more than 4 deep (reader._MAX_TUNNEL_DEPTH)
    "encrypted",              # payload not readable: 802.11 protected frame, MACsec with encryption
)
# The same codes as C constants (kept in SKIP_REASONS order; tests check it).
ST_OK = cython.declare(cython.schar, 0)
ST_SLOW = cython.declare(cython.schar, 1)
ST_UNSUP = cython.declare(cython.schar, 2)
ST_UNKIF = cython.declare(cython.schar, 3)
ST_TRLINK = cython.declare(cython.schar, 4)
ST_ARP = cython.declare(cython.schar, 5)
ST_NONIP = cython.declare(cython.schar, 6)
ST_TRIP = cython.declare(cython.schar, 7)
ST_BADIP = cython.declare(cython.schar, 8)
ST_FRAG = cython.declare(cython.schar, 9)
ST_UDP = cython.declare(cython.schar, 10)
ST_ICMP = cython.declare(cython.schar, 11)
ST_ICMP6 = cython.declare(cython.schar, 12)
ST_OTHER = cython.declare(cython.schar, 13)
ST_TRTCP = cython.declare(cython.schar, 14)
ST_BADTCP = cython.declare(cython.schar, 15)
STATUS_CODES = (ST_OK, ST_SLOW, ST_UNSUP, ST_UNKIF, ST_TRLINK, ST_ARP, ST_NONIP, ST_TRIP, ST_BADIP, ST_FRAG,
                ST_UDP, ST_ICMP, ST_ICMP6, ST_OTHER, ST_TRTCP, ST_BADTCP)

NO_IFACE = cython.declare(cython.longlong, -1)    # pseudo link type: pcapng block naming no known interface
CSUM_BAD = cython.declare(cython.uchar, 0)        # batch.CSUM_* (the `csum` column)
CSUM_GOOD = cython.declare(cython.uchar, 1)
CSUM_UNVERIFIABLE = cython.declare(cython.uchar, 2)


@cython.cfunc
@cython.nogil
@cython.inline
@cython.exceptval(check=False)
def _tunnel_port(p: cython.uint) -> cython.bint:
    """UDP ports of the tunnels reader._parse_net unwraps (VXLAN, VXLAN-GPE, Geneve, GTP-U, Teredo)."""
    return p == 4789 or p == 4790 or p == 6081 or p == 2152 or p == 3544


@cython.cfunc
@cython.nogil
@cython.exceptval(check=False)
@cython.boundscheck(False)
@cython.wraparound(False)
def _teredo_like(buf: cython.const[cython.uchar][::1], u: cython.Py_ssize_t, n: cython.Py_ssize_t) -> cython.bint:
    """A UDP payload at u (record bytes up to n) that reader._parse_net may take for Teredo on any port:
    an origin/authentication indicator (0x0000 / 0x0001), or an IPv6 header whose payload length fills
    the UDP length exactly. A superset of what _parse_net accepts (it checks the rest)."""
    ul: cython.Py_ssize_t
    if n < u + 2:
        return False
    if buf[u] == 0:
        return buf[u + 1] <= 1
    if buf[u] >> 4 != 6 or n < u + 6:
        return False
    ul = (buf[u - 4] << 8) | buf[u - 3]
    return ul == 8 + 40 + ((buf[u + 4] << 8) | buf[u + 5])


@cython.cfunc
@cython.nogil
@cython.exceptval(check=False)
@cython.boundscheck(False)
@cython.wraparound(False)
def _udp_status(buf: cython.const[cython.uchar][::1], s: cython.Py_ssize_t, t: cython.Py_ssize_t,
                n: cython.Py_ssize_t) -> cython.schar:
    """A UDP datagram at offset `t` of the record at `s` (`n` bytes captured), IPv4 or IPv6: ST_SLOW when it may
    carry a tunnel (a tunnel port either way, or Teredo's shape: the scalar path unwraps it), else ST_UDP."""
    if n >= t + 8 and (_tunnel_port((buf[s + t] << 8) | buf[s + t + 1])
                       or _tunnel_port((buf[s + t + 2] << 8) | buf[s + t + 3])
                       or _teredo_like(buf, s + t + 8, s + n)):
        return ST_SLOW
    return ST_UDP


@cython.cfunc
@cython.nogil
@cython.exceptval(check=False)
def _other_linktype(lt: cython.longlong) -> cython.schar:
    """A link type beyond the kernel's own: ST_SLOW for those of links.SLOW_LINKTYPES (FDDI, PPP, PPP in
    HDLC framing, PPPoE, Cisco HDLC, 802.11, radiotap, PPI, NFLOG), else unknown interface / unsupported."""
    if lt == NO_IFACE:
        return ST_UNKIF
    if (lt == 10 or lt == 9 or lt == 50 or lt == 51 or lt == 104 or lt == 105 or lt == 127 or lt == 192
            or lt == 239):
        return ST_SLOW
    return ST_UNSUP


@cython.cfunc
@cython.nogil
@cython.exceptval(check=False)
@cython.boundscheck(False)
@cython.wraparound(False)
def _other_ethertype(buf: cython.const[cython.uchar][::1], s: cython.Py_ssize_t, n: cython.Py_ssize_t,
                     l3: cython.Py_ssize_t, et: cython.uint) -> cython.schar:
    """An ethertype other than IPv4/IPv6/ARP: ST_SLOW for the ones reader._parse_net unwraps (MPLS,
    PPPoE, VN-Tag, FabricPath, E-Tag, PBB, MACsec, NSH, bridged Ethernet) and for an 802.3 length
    followed by LLC/SNAP; anything else is non_ip."""
    if (et == 0x8847 or et == 0x8848 or et == 0x8864 or et == 0x8926 or et == 0x8903 or et == 0x893F
            or et == 0x88E7 or et == 0x88E5 or et == 0x894F or et == 0x6558):
        return ST_SLOW
    if et <= 1500 and n >= l3 + 3 and buf[s + l3] == 0xAA and buf[s + l3 + 1] == 0xAA and buf[s + l3 + 2] == 3:
        return ST_SLOW
    return ST_NONIP


@cython.cfunc
@cython.nogil
@cython.inline
@cython.exceptval(check=False)
def _host_le() -> cython.bint:
    """The host is little-endian. Compiled, a constant the C compiler folds (the first byte of the number 1),
    so every test of it costs nothing; uncompiled, sys.byteorder."""
    one: cython.uint = 1
    c: cython.uchar = 0
    if cython.compiled:
        memcpy(cython.address(c), cython.address(one), 1)
        return c == 1
    else:
        return sys.byteorder == "little"


@cython.cfunc
@cython.nogil
@cython.inline
@cython.exceptval(check=False)
@cython.boundscheck(False)
@cython.wraparound(False)
def _bswap32(v: cython.uint) -> cython.uint:
    """The four bytes of v in the other order (gcc makes it one bswap)."""
    return (v >> 24) | ((v >> 8) & 0xFF00) | ((v & 0xFF00) << 8) | ((v & 0xFF) << 24)


@cython.cfunc
@cython.nogil
@cython.inline
@cython.exceptval(check=False)
@cython.boundscheck(False)
@cython.wraparound(False)
def _be16(buf: cython.const[cython.uchar][::1], o: cython.Py_ssize_t) -> cython.uint:
    """The big-endian 16-bit word at buf[o]."""
    return (buf[o] << 8) | buf[o + 1]


@cython.cfunc
@cython.nogil
@cython.inline
@cython.exceptval(check=False)
@cython.boundscheck(False)
@cython.wraparound(False)
def _be32(buf: cython.const[cython.uchar][::1], o: cython.Py_ssize_t) -> cython.uint:
    """The big-endian 32-bit word at buf[o] (compiled: one load, swapped on a little-endian host)."""
    v: cython.uint
    if cython.compiled:
        memcpy(cython.address(v), cython.address(buf[o]), 4)
        return _bswap32(v) if _host_le() else v
    else:
        return (cython.cast(cython.uint, buf[o]) << 24) | (buf[o + 1] << 16) | (buf[o + 2] << 8) | buf[o + 3]


@cython.cfunc
@cython.nogil
@cython.inline
@cython.exceptval(check=False)
@cython.boundscheck(False)
@cython.wraparound(False)
def _u32(buf: cython.const[cython.uchar][::1], o: cython.Py_ssize_t, big_endian: cython.bint) -> cython.uint:
    """The 32-bit word at buf[o] in the given byte order."""
    v: cython.uint
    if cython.compiled:
        memcpy(cython.address(v), cython.address(buf[o]), 4)
        return _bswap32(v) if big_endian == _host_le() else v
    elif big_endian:
        return (cython.cast(cython.uint, buf[o]) << 24) | (buf[o + 1] << 16) | (buf[o + 2] << 8) | buf[o + 3]
    else:
        return (cython.cast(cython.uint, buf[o + 3]) << 24) | (buf[o + 2] << 16) | (buf[o + 1] << 8) | buf[o]


@cython.cfunc
@cython.nogil
@cython.inline
@cython.exceptval(check=False)
def _addc(acc: cython.ulonglong, v: cython.ulonglong) -> cython.ulonglong:
    """acc + v with the carry out of 64 bits added back (2**64 = 1 modulo 0xffff): compiled only."""
    acc += v
    if acc < v:
        acc += 1
    return acc


@cython.cfunc
@cython.nogil
@cython.inline
@cython.exceptval(check=False)
@cython.boundscheck(False)
@cython.wraparound(False)
def _word_sum(buf: cython.const[cython.uchar][::1], start: cython.Py_ssize_t, length: cython.Py_ssize_t,
              start2: cython.Py_ssize_t, length2: cython.Py_ssize_t) -> cython.ulonglong:
    """word_sum of buf[start:start + length] plus word_sum of buf[start2:start2 + length2] (a checksum's
    segment and pseudo-header addresses: one call, one fold)."""
    acc: cython.ulonglong = 0
    le: cython.ulonglong = 0
    v: cython.ulonglong = 0
    w: cython.ulonglong = 0
    v4: cython.uint = 0
    v2: cython.ushort = 0
    i: cython.Py_ssize_t = start2
    end: cython.Py_ssize_t = start2 + length2
    r: cython.int
    if cython.compiled and _host_le():
        # every load little-endian (eight, four, two bytes, then an odd byte as the word [byte, 0]), the
        # sum taken to big-endian words at the end (times 256)
        while i + 8 <= end:                 # (the second range: 0, 8 or 32 bytes)
            memcpy(cython.address(v), cython.address(buf[i]), 8)
            le = _addc(le, v)
            i += 8
        i = start
        end = start + length
        while i + 16 <= end:
            memcpy(cython.address(v), cython.address(buf[i]), 8)
            memcpy(cython.address(w), cython.address(buf[i + 8]), 8)
            le = _addc(le, v)
            le = _addc(le, w)
            i += 16
        if i + 8 <= end:
            memcpy(cython.address(v), cython.address(buf[i]), 8)
            le = _addc(le, v)
            i += 8
        if i + 4 <= end:
            memcpy(cython.address(v4), cython.address(buf[i]), 4)
            le = _addc(le, v4)
            i += 4
        if i + 2 <= end:
            memcpy(cython.address(v2), cython.address(buf[i]), 2)
            le = _addc(le, v2)
            i += 2
        if i < end:
            le = _addc(le, buf[i])
        return ((le & _LO32) + (le >> 32)) * 256      # (< 2**41: the caller's % 0xFFFF folds it)
    for r in range(2):                       # the exact sum of the big-endian words, range by range
        i = start if r == 0 else start2
        end = i + (length if r == 0 else length2)
        while i + 1 < end:
            acc += (buf[i] << 8) | buf[i + 1]
            i += 2
        if i < end:
            acc += buf[i] << 8
    return acc


@cython.ccall
@cython.exceptval(check=False)
@cython.boundscheck(False)
@cython.wraparound(False)
def word_sum(buf: cython.const[cython.uchar][::1], start: cython.Py_ssize_t,
             length: cython.Py_ssize_t) -> cython.ulonglong:
    """A number congruent, modulo 0xffff, to the sum of the big-endian 16-bit words of buf[start:start +
    length], an odd last byte padded with a zero (the caller keeps the range inside buf): what a checksum
    test reads (`% 0xffff == 0`). Uncompiled, the exact sum. Compiled, on a little-endian host, eight bytes
    a load (then four, two, one): a load is little-endian words and, as 2**16 = 1 (mod 0xffff), congruent
    to their sum (an odd last byte read alone is the little-endian word [byte, 0]); a big-endian word is
    congruent to 256 times the same two bytes read little-endian; a carry out of 64 bits is worth 1
    (2**64 = 1)."""
    return _word_sum(buf, start, length, 0, 0)


@cython.ccall
@cython.boundscheck(False)
@cython.wraparound(False)
def walk_pcap(buf: cython.const[cython.uchar][::1], pos: cython.Py_ssize_t, end: cython.Py_ssize_t,
              limit: cython.Py_ssize_t, big_endian: cython.bint, offs: cython.longlong[::1],
              hdr: cython.longlong[:, ::1]) -> tuple:
    """Locate up to `limit` complete pcap records from byte `pos` (a record header: ts_sec, ts_frac,
    incl_len, orig_len; then incl_len bytes) within buf[:end]. Writes their offsets to offs and their
    headers' four words to hdr (4 x limit: hdr[w, k] is word w of record k, an unsigned 32-bit value; the
    reader's columns without a gather) and returns (count, pos after
    the last, status): 0 "limit" (more may follow), 1 "need" (the next record is not all there), 2 "corrupt"
    (the next header claims more than 64 MiB and does not fit)."""
    n: cython.Py_ssize_t = 0
    incl: cython.ulonglong
    status: cython.int = 0
    # (without the GIL: the walk is the first to touch each page of a mapped capture, and the page faults
    # are most of its time; the read-ahead worker lets the analysis run meanwhile)
    with cython.nogil:
        while n < limit:
            if pos + 12 > end:
                status = 1
                break
            incl = _u32(buf, pos + 8, big_endian)
            if pos + 16 + incl > end:
                status = 2 if incl > (1 << 26) else 1
                break
            offs[n] = pos
            hdr[0, n] = _u32(buf, pos, big_endian)
            hdr[1, n] = _u32(buf, pos + 4, big_endian)
            hdr[2, n] = incl
            hdr[3, n] = _u32(buf, pos + 12, big_endian)
            n += 1
            pos += 16 + incl
    return n, pos, status


@cython.ccall
@cython.boundscheck(False)
@cython.wraparound(False)
def decode_group(buf: cython.const[cython.uchar][::1], doffs: cython.const[cython.longlong][::1],
                 caps: cython.const[cython.longlong][::1], origs: cython.const[cython.longlong][::1],
                 lts: cython.const[cython.longlong][::1], st: cython.schar[::1], rows: cython.longlong[::1],
                 family: cython.uchar[::1], src: cython.uchar[:, ::1], dst: cython.uchar[:, ::1],
                 sport: cython.ushort[::1], dport: cython.ushort[::1], flags: cython.ushort[::1],
                 seq: cython.uint[::1], ack: cython.uint[::1], win: cython.ushort[::1], plen: cython.uint[::1],
                 mss: cython.ushort[::1], wscale: cython.schar[::1], sack_ok: cython.uchar[::1],
                 has_ts: cython.uchar[::1], tsval: cython.uint[::1], tsecr: cython.uint[::1],
                 ip_len: cython.uint[::1], csum: cython.uchar[::1], ttl: cython.uchar[::1],
                 ipid: cython.ushort[::1]) -> cython.Py_ssize_t:
    """Decode records i = 0..len(doffs)-1 (captured bytes buf[doffs[i]:doffs[i] + caps[i]], original
    length origs[i], link type lts[i]). Sets st[i] to ST_OK (a TCP segment), ST_SLOW (for
    reader._parse_one) or a skip code; the k-th ST_OK record's number goes to rows[k] and its columns
    (as batch.ALL_COLUMNS, minus index/ts/iface/tunnel) to row k of the column arrays. Returns the
    number of ST_OK records. Each step mirrors reader._link / reader._parse_net, in their order."""
    nrec: cython.Py_ssize_t = len(doffs)
    buflen: cython.Py_ssize_t = len(buf)
    m: cython.Py_ssize_t = 0
    i: cython.Py_ssize_t
    s: cython.Py_ssize_t          # record start in buf
    n: cython.Py_ssize_t          # captured length
    lt: cython.longlong
    l3: cython.Py_ssize_t
    et: cython.uint
    v: cython.uint
    ihl: cython.Py_ssize_t
    tot: cython.longlong
    fo: cython.uint
    proto: cython.uint
    fam: cython.uchar
    t: cython.Py_ssize_t          # TCP header offset (relative to s)
    tcplen: cython.longlong
    iplen: cython.longlong
    af: cython.ulonglong
    be: cython.ulonglong
    le: cython.ulonglong
    doff: cython.Py_ssize_t
    p: cython.Py_ssize_t
    k: cython.uint
    ln: cython.Py_ssize_t
    oend: cython.Py_ssize_t
    a: cython.Py_ssize_t
    acc: cython.ulonglong
    tv: cython.uint
    te: cython.uint
    o_mss: cython.ushort
    o_ws: cython.schar
    o_sok: cython.uchar
    o_ts: cython.uchar
    hl: cython.uchar              # IPv4 TTL / IPv6 hop limit
    ident: cython.uint            # IPv4 Identification (0 for IPv6)

    with cython.nogil:                 # (plain C over the buffers: the reader thread lets the analysis run)
        for i in range(nrec):
            s = doffs[i]
            n = caps[i]
            if n > buflen - s:            # (located records lie inside buf; never trust it blindly)
                n = buflen - s
            if n < 0:
                n = 0
            lt = lts[i]

            # ---- link layer (reader._link)
            if lt == 1 or lt == 113 or lt == 276:       # Ethernet, Linux cooked v1, v2 (+ VLAN tags)
                if lt == 1:
                    l3, p = 14, 12
                elif lt == 113:
                    l3, p = 16, 14
                else:
                    l3, p = 20, 0
                if n < l3:
                    st[i] = ST_TRLINK
                    continue
                et = _be16(buf, s + p)
                if et != 0x0800:                        # (IPv4, the common case, with one test)
                    while et == 0x8100 or et == 0x88A8 or et == 0x9100:
                        if n < l3 + 4:
                            break
                        et = _be16(buf, s + l3 + 2)
                        l3 += 4
                    if et == 0x8100 or et == 0x88A8 or et == 0x9100:
                        st[i] = ST_TRLINK
                        continue
            elif lt == 101 or lt == 12 or lt == 14:     # raw IP: the version nibble says which
                if n < 1:
                    st[i] = ST_TRLINK
                    continue
                v = buf[s] >> 4
                l3 = 0
                if v == 4:
                    et = 0x0800
                elif v == 6:
                    et = 0x86DD
                else:
                    st[i] = ST_BADIP
                    continue
            elif lt == 228 or lt == 229:                # raw IPv4 / raw IPv6
                if n < 1:
                    st[i] = ST_TRLINK
                    continue
                l3 = 0
                et = 0x0800 if lt == 228 else 0x86DD
            elif lt == 0 or lt == 108:                  # BSD NULL (host byte order) / LOOP (network order)
                if n < 4:
                    st[i] = ST_TRLINK
                    continue
                be = (cython.cast(cython.ulonglong, buf[s]) << 24) | (buf[s + 1] << 16) | (buf[s + 2] << 8) | buf[s + 3]
                af = be
                if lt == 0:
                    le = (cython.cast(cython.ulonglong, buf[s + 3]) << 24) | (buf[s + 2] << 16) | (buf[s + 1] << 8) | buf[s]
                    if le <= 0xFFFF:
                        af = le
                l3 = 4
                if af == 2:
                    et = 0x0800
                elif af == 24 or af == 28 or af == 30:
                    et = 0x86DD
                else:
                    st[i] = ST_NONIP
                    continue
            else:                                       # unknown interface, other link types, unsupported
                st[i] = _other_linktype(lt)
                continue

            # ---- network layer (reader._parse_net, unencapsulated packets only)
            if et == 0x0800:
                if n < l3 + 20:
                    st[i] = ST_TRIP
                    continue
                v = buf[s + l3]
                ihl = (v & 15) * 4
                if v >> 4 != 4 or ihl < 20:
                    st[i] = ST_BADIP
                    continue
                if n < l3 + ihl:
                    st[i] = ST_TRIP
                    continue
                tot = _be16(buf, s + l3 + 2)
                fo = _be16(buf, s + l3 + 6)
                proto = buf[s + l3 + 9]
                if tot == 0:                            # TSO: length left to the NIC
                    tot = origs[i] - l3
                if tot < ihl:
                    st[i] = ST_BADIP
                    continue
                if fo & 0x1FFF:                         # a later fragment: reassembled if TCP (scalar path)
                    st[i] = ST_SLOW if proto == 6 else ST_FRAG
                    continue
                t = l3 + ihl
                if proto != 6:
                    if proto == 17:
                        st[i] = _udp_status(buf, s, t, n)
                    elif proto == 1:
                        st[i] = ST_ICMP
                    elif proto == 4 or proto == 41 or proto == 47:    # IP-in-IP, 6in4, GRE
                        st[i] = ST_SLOW
                    else:
                        st[i] = ST_OTHER
                    continue
                if fo & 0x2000:                         # first fragment (MF): reassembled (scalar path)
                    st[i] = ST_SLOW
                    continue
                fam = 4
                hl = buf[s + l3 + 8]
                ident = _be16(buf, s + l3 + 4)
                tcplen = tot - ihl
                iplen = tot
            elif et == 0x86DD:
                if n < l3 + 40:
                    st[i] = ST_TRIP
                    continue
                if buf[s + l3] >> 4 != 6:
                    st[i] = ST_BADIP
                    continue
                tcplen = (buf[s + l3 + 4] << 8) | buf[s + l3 + 5]
                if tcplen == 0:                         # jumbogram / TSO
                    tcplen = origs[i] - l3 - 40
                    if tcplen < 0:
                        tcplen = 0
                proto = buf[s + l3 + 6]
                t = l3 + 40
                if proto != 6:
                    if proto == 17:
                        st[i] = _udp_status(buf, s, t, n)
                    elif proto == 58:
                        st[i] = ST_ICMP6
                    elif (proto == 0 or proto == 43 or proto == 60 or proto == 44 or proto == 51 or proto == 135
                          or proto == 139 or proto == 140 or proto == 4 or proto == 41 or proto == 47 or proto == 1):
                        st[i] = ST_SLOW                 # extension headers, IP-in-IP, GRE (and ICMP, as ever)
                    else:
                        st[i] = ST_OTHER
                    continue
                fam = 6
                hl = buf[s + l3 + 7]
                ident = 0
                iplen = 40 + tcplen
            elif et == 0x0806 or et == 0x8035:
                st[i] = ST_ARP
                continue
            else:                                       # (out of line: the common path's code stays as it was)
                st[i] = _other_ethertype(buf, s, n, l3, et)
                continue

            # ---- TCP header and options (the tail of reader._parse_net)
            if n < t + 20:
                st[i] = ST_TRTCP
                continue
            doff = (buf[s + t + 12] >> 4) * 4
            if doff < 20 or tcplen < doff:
                st[i] = ST_BADTCP
                continue
            o_mss, o_ws, o_sok, o_ts, tv, te = 0, -1, 0, 0, 0, 0
            p = t + 20
            oend = t + doff
            if oend > n:
                oend = n
            if oend == t + 32 and _be32(buf, s + p) == 0x0101080A:
                # the usual options of a segment after the handshake, NOP NOP TS: what the loop below finds
                o_ts = 1
                tv = _be32(buf, s + p + 4)
                te = _be32(buf, s + p + 8)
                p = oend
            while p < oend:
                k = buf[s + p]
                if k == 0:
                    break
                if k == 1:
                    p += 1
                    continue
                if p + 1 >= oend:
                    break
                ln = buf[s + p + 1]
                if ln < 2 or p + ln > oend:
                    break
                if k == 2 and ln == 4:
                    o_mss = (buf[s + p + 2] << 8) | buf[s + p + 3]
                elif k == 3 and ln == 3:
                    o_ws = buf[s + p + 2] if buf[s + p + 2] < 127 else 127
                elif k == 4 and ln == 2:
                    o_sok = 1
                elif k == 8 and ln == 10:
                    o_ts = 1
                    tv = _be32(buf, s + p + 2)
                    te = _be32(buf, s + p + 6)
                p += ln

            # ---- the row
            st[i] = ST_OK
            rows[m] = i
            family[m] = fam
            if fam == 4:                                # ::ffff:a.b.c.d
                if cython.compiled:
                    memset(cython.address(src[m, 0]), 0, 10)
                    memset(cython.address(dst[m, 0]), 0, 10)
                    memset(cython.address(src[m, 10]), 0xFF, 2)
                    memset(cython.address(dst[m, 10]), 0xFF, 2)
                    memcpy(cython.address(src[m, 12]), cython.address(buf[s + l3 + 12]), 4)
                    memcpy(cython.address(dst[m, 12]), cython.address(buf[s + l3 + 16]), 4)
                else:
                    for a in range(10):
                        src[m, a] = 0
                        dst[m, a] = 0
                    src[m, 10] = 0xFF
                    src[m, 11] = 0xFF
                    dst[m, 10] = 0xFF
                    dst[m, 11] = 0xFF
                    for a in range(4):
                        src[m, 12 + a] = buf[s + l3 + 12 + a]
                        dst[m, 12 + a] = buf[s + l3 + 16 + a]
            elif cython.compiled:
                memcpy(cython.address(src[m, 0]), cython.address(buf[s + l3 + 8]), 16)
                memcpy(cython.address(dst[m, 0]), cython.address(buf[s + l3 + 24]), 16)
            else:
                for a in range(16):
                    src[m, a] = buf[s + l3 + 8 + a]
                    dst[m, a] = buf[s + l3 + 24 + a]
            a = s + t
            sport[m] = _be16(buf, a)
            dport[m] = _be16(buf, a + 2)
            seq[m] = _be32(buf, a + 4)
            ack[m] = _be32(buf, a + 8)
            flags[m] = ((buf[a + 12] & 1) << 8) | buf[a + 13]
            win[m] = _be16(buf, a + 14)
            plen[m] = tcplen - doff
            mss[m] = o_mss
            wscale[m] = o_ws
            sack_ok[m] = o_sok
            has_ts[m] = o_ts
            tsval[m] = tv
            tsecr[m] = te
            ip_len[m] = iplen
            ttl[m] = hl
            ipid[m] = ident
            # TCP checksum (batch.py, reader._csum_ok): verified only when the whole segment was captured.
            # Ones' complement: the pseudo-header's words (addresses as stored, protocol, TCP length) plus
            # the segment's sum to 0 modulo 0xffff.
            if n < t + tcplen:
                csum[m] = CSUM_UNVERIFIABLE
            else:
                if fam == 4:                            # ::ffff:a.b.c.d: two 0xffff words, then the addresses
                    acc = 6 + tcplen + 2 * 0xFFFF + _word_sum(buf, s + t, tcplen, s + l3 + 12, 8)
                else:
                    acc = 6 + tcplen + _word_sum(buf, s + t, tcplen, s + l3 + 8, 32)
                csum[m] = CSUM_GOOD if acc % 0xFFFF == 0 else CSUM_BAD
            m += 1
    return m


@cython.cfunc
@cython.nogil
@cython.inline
@cython.exceptval(check=False)
def _bswap64(v: cython.ulonglong) -> cython.ulonglong:
    """The eight bytes of v in the other order (gcc makes it one bswap; the masks are C constants)."""
    m8: cython.ulonglong = (cython.cast(cython.ulonglong, 0x00FF00FF) << 32) | 0x00FF00FF
    m16: cython.ulonglong = (cython.cast(cython.ulonglong, 0x0000FFFF) << 32) | 0x0000FFFF
    v = ((v >> 8) & m8) | ((v & m8) << 8)
    v = ((v >> 16) & m16) | ((v & m16) << 16)
    return (v >> 32) | (v << 32)


@cython.cfunc
@cython.nogil
@cython.inline
@cython.exceptval(check=False)
def _cmp16(a: cython.p_const_uchar, b: cython.p_const_uchar) -> cython.int:
    """memcmp(a, b, 16)'s sign (compiled only): the 16 bytes as two big-endian 64-bit numbers."""
    x: cython.ulonglong
    y: cython.ulonglong
    memcpy(cython.address(x), a, 8)
    memcpy(cython.address(y), b, 8)
    if x == y:
        memcpy(cython.address(x), a + 8, 8)
        memcpy(cython.address(y), b + 8, 8)
        if x == y:
            return 0
    if _host_le():
        x = _bswap64(x)
        y = _bswap64(y)
    return -1 if x < y else 1


@cython.ccall
@cython.boundscheck(False)
@cython.wraparound(False)
def flow_keys(src: cython.const[cython.uchar][:, ::1], dst: cython.const[cython.uchar][:, ::1],
              sport: cython.const[cython.ushort][::1], dport: cython.const[cython.ushort][::1],
              key: cython.uchar[:, ::1], lo: cython.uchar[::1]) -> cython.void:
    """Per row: the connection's key, the same for both directions, and whether the source is the lower
    side. A side is its 16 address bytes then its port big-endian (18 bytes); the lower side (bytewise)
    comes first in the 36-byte key; lo[i] = 1 when the source side <= the destination side."""
    nrow: cython.Py_ssize_t = len(sport)
    i: cython.Py_ssize_t
    j: cython.Py_ssize_t
    c: cython.int
    sp: cython.uint
    dp: cython.uint
    with cython.nogil:
        for i in range(nrow):
            sp = sport[i]
            dp = dport[i]
            c = 0                              # memcmp(source side, destination side)
            if cython.compiled:                # (as two big-endian 64-bit numbers: no call, no byte loop)
                c = _cmp16(cython.address(src[i, 0]), cython.address(dst[i, 0]))
            else:
                for j in range(16):
                    if src[i, j] != dst[i, j]:
                        c = -1 if src[i, j] < dst[i, j] else 1
                        break
            if c == 0 and sp != dp:
                c = -1 if sp < dp else 1
            if c <= 0:
                lo[i] = 1
                if cython.compiled:
                    memcpy(cython.address(key[i, 0]), cython.address(src[i, 0]), 16)
                    memcpy(cython.address(key[i, 18]), cython.address(dst[i, 0]), 16)
                else:
                    for j in range(16):
                        key[i, j] = src[i, j]
                        key[i, 18 + j] = dst[i, j]
                key[i, 16], key[i, 17], key[i, 34], key[i, 35] = sp >> 8, sp & 0xFF, dp >> 8, dp & 0xFF
            else:
                lo[i] = 0
                if cython.compiled:
                    memcpy(cython.address(key[i, 0]), cython.address(dst[i, 0]), 16)
                    memcpy(cython.address(key[i, 18]), cython.address(src[i, 0]), 16)
                else:
                    for j in range(16):
                        key[i, j] = dst[i, j]
                        key[i, 18 + j] = src[i, j]
                key[i, 16], key[i, 17], key[i, 34], key[i, 35] = dp >> 8, dp & 0xFF, sp >> 8, sp & 0xFF


@cython.ccall
@cython.boundscheck(False)
@cython.wraparound(False)
def walk_epbs(buf: cython.const[cython.uchar][::1], pos: cython.Py_ssize_t, end: cython.Py_ssize_t,
              limit: cython.Py_ssize_t, big_endian: cython.bint, offs: cython.longlong[::1],
              n: cython.Py_ssize_t) -> tuple:
    """Skip over the run of plain pcapng Enhanced Packet Blocks at `pos` (type 6, a length that is a
    multiple of 4, at least 32, at most 64 MiB and inside buf[:end]), writing their offsets to offs[n:]
    while n < limit. Returns (n, pos) at the first block that is anything else, for the caller's block
    walker (reader._walk_pcapng) to handle. Block header: type, total length (section byte order)."""
    btype: cython.ulonglong
    blen: cython.ulonglong
    while n < limit and pos + 12 <= end:
        btype = _u32(buf, pos, big_endian)
        blen = _u32(buf, pos + 4, big_endian)
        if btype != 6 or blen < 32 or blen > (1 << 26) or blen & 3 or pos + blen > end:
            break
        offs[n] = pos
        n += 1
        pos += blen
    return n, pos
