"""A re-implementation of how Zeek tracks a TCP connection, for conn.log fidelity.

Written in our own code from a reading of Zeek's TCP session adapter, endpoint,
reassembler, connection and conn/main.zeek sources. What it reproduces:

* Coarse endpoint states (inactive, SYN sent, SYN-ACK sent, partial,
  established, closed, reset) and the per-packet transitions between them,
  including the odd ones (an originator's FIN+RST fix-up, the SYN/SYN-ACK
  reversal, an ACK after a lone SYN-ACK establishing the originator, ...).
* History letters: S H A D F R (upper case = originator), I (FIN+RST) and
  Q (SYN with FIN or RST), each once per direction, except S/H/F/R which repeat
  when their sequence number changes; T/W/G repeated logarithmically (1st,
  10th, 100th, ... occurrence); ``^`` when roles were flipped.
* Orientation: the first packet's sender is the originator unless the first
  packet is not a plain SYN and comes from a likely server port (both ports
  likely: only for non-SYN packets and when the source port is the lower);
  a SYN arriving after a SYN-ACK with the matching sequence number (reversal);
  a connection that starts with a lone SYN-ACK followed by an ACK or data
  (Zeek >= 5.1) is flipped at that second packet.
* Splitting: Zeek's timers, evaluated lazily (nothing about a connection
  changes between its packets, so a timer's verdict only matters when the next
  packet on the same 4-tuple arrives, or at the end): the 5 s attempt timer
  after an unanswered SYN, the expire timer (5 s SYN timeout, then every 6 s,
  removing once idle for the 5 s linger and at least one side closed/reset/idle),
  the delete timer 5 s after a complete close, the inactivity timeout (5 min
  once out of the handshake, 1 min before), and reuse: a SYN with another ISN
  (or any SYN after a close) starts a new connection.
* Sizes: orig/resp bytes from sequence numbers (Zeek's ``Size()``), packet and
  IP byte counts (conn-size analyzer), missed bytes and G from the reassembler's
  gap rule (gaps only count while both endpoints are established or closing
  cleanly), duration from first packet to the last one that was not a trailing
  packet after both sides closed.

* Checksums (the batch's ``csum`` column): a segment with a bad TCP checksum is
  discarded after the connection lookup and only adds C/c (logarithmically, like
  T/W/G), as Zeek does by default; ``ZeekTracker(ignore_checksums=True)`` is
  ``zeek -C``.

Not reproduced (documented TODOs): service (needs protocol detection), local_orig/local_resp
(Site::local_nets is empty by default, so Zeek leaves them unset too), the
partial-close and reset timers (only armed when scripts handle those events;
the expire timer removes those connections a few seconds later instead), data
pending in the reassembler delaying a close, and ``x``.
"""
from __future__ import annotations

import numpy as np

import hashlib
import re
from dataclasses import dataclass, field


from ..capture.batch import ACK, FIN, RST, SYN, Batch
from ..track.flowtable import _flow_keys, ip_text

# Endpoint states, numbered as Zeek numbers them.
INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)
STATE_NAMES = ("inactive", "syn_sent", "syn_ack_sent", "partial", "established", "closed", "reset")
_HANDSHAKE = (INACTIVE, SYN_SENT, SYN_ACK_SENT)

NS = 1_000_000_000
# Zeek's default timing constants (init-bare.zeek), in ns.
SYN_TIMEOUT = 5 * NS          # tcp_SYN_timeout: first expire check
SESSION_TIMER = 6 * NS        # tcp_session_timer: expire re-check interval
LINGER = 5 * NS               # tcp_connection_linger
ATTEMPT_DELAY = 5 * NS        # tcp_attempt_delay
CLOSE_DELAY = 5 * NS          # tcp_close_delay
INACTIVITY = 300 * NS         # tcp_inactivity_timeout (set when the handshake is over)
INITIAL_INACTIVITY = 60 * NS  # the session adapter starts with udp_inactivity_timeout
MAX_ABOVE_HOLE = 16384        # tcp_max_above_hole_without_any_acks
EXCESSIVE_DATA = 10 * 1024 * 1024  # tcp_excessive_data_without_further_acks
TOO_LARGE_SEQ_DELTA = 1048576

# likely_server_ports for TCP as the default (base) scripts populate it.
LIKELY_SERVER_PORTS = frozenset({
    21, 2811,                                   # ftp
    22,                                         # ssh
    25, 587,                                    # smtp
    53,                                         # dns (tcp)
    80, 81, 631, 1080, 3128, 8000, 8080, 8888,  # http
    88,                                         # kerberos
    135,                                        # dce-rpc
    139, 445,                                   # smb
    143,                                        # imap
    389, 3268,                                  # ldap
    443, 563, 585, 614, 636, 989, 990, 992, 993, 995, 5223,  # ssl/tls
    502,                                        # modbus
    1434, 3306,                                 # mysql
    3389,                                       # rdp
    5222, 5269,                                 # xmpp
    5432,                                       # postgresql
    6379,                                       # redis
    6666, 6667, 6668, 6669,                     # irc
    20000,                                      # dnp3
})

M32 = 0xFFFFFFFF
_ORIG, _RESP = 1, 2
# history masks (responder's shifted by 16)
H_SYN, H_FIN, H_RST, H_FINRST, H_DATA, H_ACK, H_MULTI = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40
_RSTOS0 = re.compile(r"\^?S[^HAFGIQ]*R.*")


def seq_delta(a: int, b: int) -> int:
    return ((a - b + 0x80000000) & M32) - 0x80000000


class _Ep:
    """One endpoint of a Zeek connection (Zeek's TCP_Endpoint plus its reassembler and size counters)."""

    __slots__ = ("state", "prev", "is_orig", "start", "last", "ack", "did_close", "fin_cnt", "rst_cnt",
                 "fin_seq", "h_syn", "h_fin", "h_rst", "rx_n", "rx_t", "w0_n", "w0_t", "g_n", "g_t", "chk_n", "chk_t",
                 "pkts", "ipb", "ra", "blocks", "trim", "skip", "raw", "port", "lo")

    def __init__(self, is_orig: bool, raw: bytes, port: int, lo: bool):
        self.state = self.prev = INACTIVE
        self.is_orig = is_orig
        self.start = self.last = self.ack = 0      # 64-bit-ish: start in [0, 2^32), others start + deltas
        self.did_close = False
        self.fin_cnt = self.rst_cnt = 0
        self.fin_seq = 0
        self.h_syn = self.h_fin = self.h_rst = 0
        self.rx_n = self.w0_n = self.g_n = self.chk_n = 0
        self.rx_t = self.w0_t = self.g_t = self.chk_t = 1
        self.pkts = self.ipb = 0
        self.ra = 1            # last reassembled (relative) sequence number
        self.blocks = None     # [(start, end)] undelivered data above a hole, sorted
        self.trim = 1
        self.skip = False
        self.raw, self.port = raw, port
        self.lo = lo           # this endpoint is the lower (address, port) of the 4-tuple key

    def set_state(self, conn: "_Conn", new: int) -> None:
        if new != self.state:
            peer = conn.r if self is conn.o else conn.o
            if new not in _HANDSHAKE and self.state in _HANDSHAKE and peer.state in _HANDSHAKE:
                conn.inactivity = INACTIVITY
            self.prev = self.state
            self.state = new

    def size(self, peer: "_Ep") -> int:
        if self.prev == SYN_SENT and self.state == RESET and peer.state == INACTIVE and not self.no_data_acked():
            return 0
        size = (max(self.last, self.ack) - self.start) % (1 << 64)
        if size:
            size -= 1
        if self.fin_cnt and size:
            size -= 1
        return size

    def no_data_acked(self) -> bool:
        return self.ack == self.start or self.ack == self.start + 1

    def clean(self) -> bool:
        return self.state == ESTABLISHED or (self.state == CLOSED and self.prev == ESTABLISHED)


class _Conn:
    __slots__ = ("key", "o", "r", "start_ts", "last_ts", "first_pkt", "last_pkt", "first_idx", "last_idx",
                 "hist", "seen", "is_partial", "fps", "active", "npkts", "missed", "inactivity",
                 "expire", "attempt", "delete", "removed", "reason", "wake", "tunnels")

    def __init__(self, key, ts: int, idx: int):
        self.key = key
        self.start_ts = self.last_ts = ts
        self.first_pkt = self.last_pkt = ts
        self.first_idx = self.last_idx = idx
        self.hist: list[str] = []
        self.tunnels: set[int] | None = None
        self.seen = 0
        self.is_partial = False
        self.fps = 0
        self.active = True
        self.npkts = 0
        self.missed = 0
        self.inactivity = INITIAL_INACTIVITY
        self.expire = [ts + SYN_TIMEOUT]   # next firing time of each expire-timer chain
        self.attempt = None                # attempt timer time
        self.delete = None                 # delete timer time
        self.removed = None
        self.reason = ""
        self.wake = 0                      # no timer can fire before this time (ns)

    # ---- history
    def check(self, ep: _Ep, mask: int, code: str) -> bool:
        """Zeek's CheckHistory: add the letter the first time; True when it was already seen."""
        if not ep.is_orig:
            mask <<= 16
            code = code.lower()
        if self.seen & mask:
            return True
        self.seen |= mask
        self.hist.append(code)
        return False

    def add(self, ep: _Ep, code: str) -> None:
        self.hist.append(code if ep.is_orig else code.lower())

    def scaled(self, ep: _Ep, which: str) -> None:
        n = getattr(ep, which + "_n") + 1
        t = getattr(ep, which + "_t")
        setattr(ep, which + "_n", n)
        if n == t:
            self.add(ep, {"rx": "T", "w0": "W", "g": "G", "chk": "C"}[which])
            setattr(ep, which + "_t", t * 10)

    # ---- roles
    def flip(self, rewrite_history: bool = False) -> None:
        self.o, self.r = self.r, self.o
        self.o.is_orig, self.r.is_orig = True, False
        self.fps = (_RESP if self.fps & _ORIG else 0) | (_ORIG if self.fps & _RESP else 0)
        self.is_partial = False
        if rewrite_history:
            # the flip on the second packet: Zeek logs it as if the SYN-ACK had come from the responder
            self.hist = ["^"] + [c.swapcase() for c in self.hist]
            self.seen = ((self.seen & 0xFFFF) << 16) | (self.seen >> 16)
        else:
            self.hist.append("^")

    # ---- timers (lazy: state is constant between this connection's packets)
    def due(self, now: int) -> int | None:
        """Time at which a timer fired at or before `now` and removed the connection, else None."""
        best = None
        o, r = self.o, self.r
        if self.delete is not None and self.delete <= now:
            best = self.delete
        if self.active:
            if self.attempt is not None and self.attempt <= now and o.state in (SYN_SENT, SYN_ACK_SENT) \
                    and r.state == INACTIVE:
                best = self.attempt if best is None else min(best, self.attempt)
            anyc = o.did_close or r.did_close
            cond = (anyc and ((o.did_close and r.did_close) or o.state == RESET or r.state == RESET
                              or o.state == INACTIVE or r.state == INACTIVE)) \
                or (o.state == INACTIVE and r.state == INACTIVE)
            edge = self.last_ts + LINGER
            for i, n in enumerate(self.expire):
                if n > now:
                    continue
                if cond:
                    k = 0 if n > edge else (edge - n) // SESSION_TIMER + 1
                    f = n + k * SESSION_TIMER
                    if f <= now:
                        best = f if best is None else min(best, f)
                        continue
                self.expire[i] = n + ((now - n) // SESSION_TIMER + 1) * SESSION_TIMER
        t = self.last_ts + self.inactivity
        if t <= now:
            best = t if best is None else min(best, t)
        return best

    def rearm(self) -> None:
        w = self.last_ts + self.inactivity
        if self.delete is not None and self.delete < w:
            w = self.delete
        if self.active:
            if self.attempt is not None and self.attempt < w:
                w = self.attempt
            for n in self.expire:
                if n < w:
                    w = n
        self.wake = w


@dataclass(slots=True)
class ZeekConn:
    """One conn.log line (values in Zeek's units; None = unset, logged as '-')."""

    ts: float
    uid: str
    orig_h: str
    orig_p: int
    resp_h: str
    resp_p: int
    proto: str
    service: str | None
    duration: float | None
    orig_bytes: int | None
    resp_bytes: int | None
    conn_state: str
    local_orig: bool | None
    local_resp: bool | None
    missed_bytes: int
    history: str
    orig_pkts: int
    orig_ip_bytes: int
    resp_pkts: int
    resp_ip_bytes: int
    tunnel_parents: list | None = None
    # not logged: for mapping to tcpfsm flows and for tests
    key: bytes = b""
    first_ns: int = 0           # first packet (ns)
    last_ns: int = 0            # last packet, trailing ones included (ns)
    first_packet: int = 0       # capture record numbers
    last_packet: int = 0
    orig_state: str = ""
    resp_state: str = ""
    end_reason: str = ""        # attempt | expire | delete | inactivity | reuse | end
    flows: list = field(default_factory=list)   # tcpfsm flow ids (filled by zeek_summary_for_flows)


def conn_state_of(os_: int, rs: int, orig_size: int, resp_size: int, history: str) -> str:
    """Zeek's conn_state decision (base/protocols/conn/main.zeek), in its order."""
    o_inactive = os_ in (INACTIVE, PARTIAL)
    r_inactive = rs in (INACTIVE, PARTIAL)
    if rs == RESET:
        if os_ in (SYN_SENT, SYN_ACK_SENT) or (os_ == RESET and orig_size == 0 and resp_size == 0):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if os_ == RESET:
        if r_inactive:
            return "RSTOS0" if _RSTOS0.fullmatch(history) else "OTH"
        return "RSTO"
    if rs == CLOSED and os_ == CLOSED:
        return "SF"
    if os_ == CLOSED:
        return "SH" if r_inactive else "S2"
    if rs == CLOSED:
        return "SHR" if o_inactive else "S3"
    if os_ == SYN_SENT and rs == INACTIVE:
        return "S0"
    if os_ == ESTABLISHED and rs == ESTABLISHED:
        return "S1"
    return "OTH"


_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def make_uid(key: bytes, start_ns: int, idx: int) -> str:
    """'C' + base62 of 96 bits, like Zeek's uids, but derived from the connection (deterministic)."""
    h = hashlib.blake2b(key + start_ns.to_bytes(8, "big", signed=True) + idx.to_bytes(8, "big"),
                        digest_size=12).digest()
    n = int.from_bytes(h, "big")
    out = []
    while n:
        n, d = divmod(n, 62)
        out.append(_B62[d])
    return "C" + "".join(reversed(out))


def _want_flip(flags: int, sport: int, dport: int, likely) -> bool:
    """Zeek's WantConnection port heuristic for a connection whose first packet is not a plain SYN."""
    if flags & SYN and not flags & ACK:
        return False
    if sport in likely:
        if dport in likely:
            return not flags & SYN and sport < dport
        return True
    return False


class ZeekTracker:
    """Feeds Zeek's TCP connection logic with columnar batches; `finish()` returns the conn.log records."""

    def __init__(self, likely_server_ports=LIKELY_SERVER_PORTS, ignore_checksums: bool = False):
        """`ignore_checksums=True` is `zeek -C`: segments with a bad TCP checksum (`csum` column 0) are
        processed like any other. By default (Zeek's) such a segment is discarded after the connection
        lookup (it can create the connection, and a SYN can still end one by reuse): it only adds C/c to
        the history (1st, 10th, 100th, ... per direction, Weird "bad_TCP_checksum") and does not count
        in packets, bytes, states or the connection's last-activity time. Unverifiable segments (cut by
        the snaplen, first fragments: `csum` 2) are processed, as Zeek checks only complete segments."""
        self.likely = frozenset(likely_server_ports)
        self.ignore_checksums = ignore_checksums
        self.current: dict = {}
        self.done: list[_Conn] = []
        self.clock = 0

    # ------------------------------------------------------------------ input
    def feed_batch(self, batch: Batch) -> None:
        c = batch.cols
        if not len(c["ts"]):
            return
        keys, lo_src = _flow_keys(c)
        ts_l, idx_l, fl_l, seq_l, ack_l, win_l, plen_l, ipl_l, sp_l, dp_l = (
            c[k].tolist() for k in ("ts", "index", "flags", "seq", "ack", "win", "plen", "ip_len", "sport",
                                    "dport"))
        src_c, dst_c = c["src"], c["dst"]
        cs = c.get("csum")
        bad = set() if self.ignore_checksums or cs is None else set(np.flatnonzero(cs == 0).tolist())
        current = self.current
        clock = self.clock
        proc = self._process
        for i, key in enumerate(keys):
            ts = ts_l[i]
            if ts > clock:
                clock = ts
            flags = fl_l[i]
            conn = current.get(key)
            if conn is not None:
                if clock >= conn.wake:
                    t = conn.due(clock)
                    if t is not None:
                        self._remove(conn, t, "timer")
                        conn = None
                if conn is not None and flags & SYN and self._is_reuse(conn, flags, seq_l[i]):
                    self._remove(conn, clock, "reuse")
                    conn = None
            lo = lo_src[i]
            if conn is None:
                sport, dport = sp_l[i], dp_l[i]
                conn = _Conn(key, ts, idx_l[i])
                conn.o = _Ep(True, bytes(src_c[i]), sport, lo)
                conn.r = _Ep(False, bytes(dst_c[i]), dport, not lo)
                if _want_flip(flags, sport, dport, self.likely):
                    conn.flip()
                current[key] = conn
            is_orig = conn.o.lo == lo
            if bad and i in bad:                     # Zeek's ValidateChecksum: Weird, history C/c, discard
                conn.scaled(conn.o if is_orig else conn.r, "chk")
                conn.last_pkt, conn.last_idx = ts, idx_l[i]
                conn.rearm()
                continue
            proc(conn, is_orig, ts, idx_l[i], flags, seq_l[i], ack_l[i], win_l[i], plen_l[i], ipl_l[i])
        self.clock = clock
        tun = c.get("tunnel")
        if tun is not None and tun.any():            # tunnel_parents: the encapsulations each was seen in
            for row in np.flatnonzero(tun).tolist():
                conn = current.get(keys[row])
                if conn is not None:
                    if conn.tunnels is None:
                        conn.tunnels = set()
                    conn.tunnels.add(int(tun[row]))

    def finish(self) -> list[ZeekConn]:
        """Log every connection still open (Zeek flushes them at the end of the trace), ts order."""
        for conn in list(self.current.values()):
            t = conn.due(self.clock)
            self._remove(conn, t if t is not None else self.clock, "timer" if t is not None else "end")
        self.current.clear()
        out = [self._record(c) for c in self.done]
        out.sort(key=lambda z: (z.first_ns, z.first_packet))
        return out

    def _remove(self, conn: _Conn, t: int, why: str) -> None:
        if why == "timer":
            why = ("delete" if conn.delete is not None and conn.delete == t else
                   "attempt" if conn.attempt == t else
                   "inactivity" if conn.last_ts + conn.inactivity == t else "expire")
        conn.removed, conn.reason = t, why
        self.done.append(conn)
        if self.current.get(conn.key) is conn:
            del self.current[conn.key]

    @staticmethod
    def _is_reuse(conn: _Conn, flags: int, seq: int) -> bool:
        o, r = conn.o, conn.r
        first = o
        if flags & ACK:
            if o.state != INACTIVE:
                return False
            first = r
        if not (o.did_close or r.did_close):
            if seq == first.start & M32:
                return False
            if not flags & ACK and first.state == SYN_ACK_SENT and r.state == INACTIVE and seq == r.start & M32:
                return False
        return True

    # ------------------------------------------------------------------ one packet (Zeek's Process)
    def _process(self, conn: _Conn, is_orig: bool, ts: int, idx: int, flags: int, seq: int, ack: int, win: int,
                 plen: int, ip_len: int) -> None:
        # A connection that began with a lone SYN-ACK is flipped by an ACK or data segment after it.
        if conn.npkts == 1 and conn.o.state == SYN_ACK_SENT and conn.r.state == INACTIVE \
                and not flags & (SYN | FIN | RST) and (flags & ACK or plen):
            conn.flip(rewrite_history=True)
            is_orig = not is_orig
        conn.npkts += 1
        conn.last_pkt = ts
        conn.last_idx = idx
        ep = conn.o if is_orig else conn.r
        peer = conn.r if is_orig else conn.o
        syn, fin, rst, ackf = flags & SYN, flags & FIN, flags & RST, flags & ACK

        # partial status (first packet seen per direction)
        if is_orig:
            if not conn.fps & _ORIG:
                conn.is_partial = not syn or bool(ackf)
        elif not conn.fps & _RESP and not conn.is_partial:
            conn.is_partial = not syn

        seg_len = plen + (1 if syn else 0) + (1 if fin else 0)
        if rst:
            seg_len -= plen
        end = (seq + seg_len) & M32

        # init_endpoint
        st = ep.state
        if st == INACTIVE:
            if syn:
                ep.start = ep.ack = seq
                ep.last = seq + ((end - seq) & M32)
            else:
                ep.start = ep.ack = (seq - 1) & M32
                ep.last = ep.start + 1
        elif syn and (st in (SYN_SENT, SYN_ACK_SENT, ESTABLISHED, PARTIAL) and seq != ep.start & M32
                      or st in (ESTABLISHED, PARTIAL)
                      or st == RESET and ep.prev == INACTIVE):
            ep.start = ep.ack = seq
            ep.last = seq + ((end - seq) & M32)

        d = seq_delta(seq, ep.last & M32)
        rel_seq = ep.last + d - ep.start
        underflow = rel_seq < 0

        # history
        bits = (1 if syn else 0) + (1 if fin else 0) + (1 if rst else 0)
        if bits > 1:
            if fin and rst:
                conn.check(ep, H_FINRST, "I")
            else:
                conn.check(ep, H_MULTI, "Q")
        elif bits == 1:
            if syn:
                code = "H" if ackf else "S"
                if conn.check(ep, H_SYN, code) and rel_seq != ep.h_syn:
                    conn.add(ep, code)
                ep.h_syn = rel_seq
            elif fin:
                if conn.check(ep, H_FIN, "F") and rel_seq + plen != ep.h_fin:
                    conn.add(ep, "F")
                ep.h_fin = rel_seq + plen
            else:
                if conn.check(ep, H_RST, "R") and rel_seq != ep.h_rst:
                    conn.add(ep, "R")
                ep.h_rst = rel_seq
        elif plen:
            conn.check(ep, H_DATA, "D")
        elif ackf:
            conn.check(ep, H_ACK, "A")

        # zero window (the scaled window is 0 exactly when the raw one is)
        if win == 0 and not rst and peer.state != CLOSED and ep.state != RESET:
            conn.scaled(ep, "w0")

        if not (conn.o.did_close and conn.r.did_close):
            conn.last_ts = ts

        if fin:
            ep.fin_cnt += 1
            ep.fin_seq = rel_seq + seg_len
        if rst:
            ep.rst_cnt += 1

        rel_ack = 0
        if ackf:
            if peer.state == INACTIVE:
                rel_ack = 1
                peer.start = peer.ack = peer.last = (ack - 1) & M32
            else:
                da = seq_delta(ack, peer.ack & M32)
                rel_ack = peer.ack + da - peer.start
                if rel_ack < 0:
                    rel_ack = 0
                elif not rst:
                    if not (ack == 0 and da > TOO_LARGE_SEQ_DELTA) and da > 0:
                        peer.ack += da

        # update_last_seq
        dl = seq_delta(end, ep.last & M32)
        if (syn or rst) and (dl > TOO_LARGE_SEQ_DELTA or dl < -TOO_LARGE_SEQ_DELTA):
            pass
        elif fin and ep.last == ep.start + 1:
            old = ep.last
            ep.last = (old & ~M32) + end + ((1 << 32) if end < (old & M32) else 0)
        elif ep.state == RESET:
            pass
        elif dl > 0:
            ep.last += dl
        elif plen > 0:
            conn.scaled(ep, "rx")

        do_close, gen_event = self._state_machine(conn, ep, peer, is_orig, flags, seq, plen, dl)
        # the flip inside the state machine (SYN/SYN-ACK reversal) changes the sender's role
        is_orig = ep.is_orig

        if ackf:
            self._ack_received(conn, peer, rel_ack)

        conn.fps |= _ORIG if is_orig else _RESP

        if plen > 0 and not rst and not underflow:
            self._data_sent(conn, ep, rel_seq + 1 if syn else rel_seq, plen)

        if do_close:
            self._closed(conn, ep, peer, gen_event)

        ep.pkts += 1
        ep.ipb += ip_len
        conn.rearm()

    def _state_machine(self, conn, ep, peer, is_orig, flags, seq, plen, dl):
        syn, fin, rst, ackf = flags & SYN, flags & FIN, flags & RST, flags & ACK
        do_close = gen_event = False
        st = ep.state
        if st == INACTIVE:
            if syn:
                if is_orig:
                    ep.set_state(conn, SYN_ACK_SENT if ackf else SYN_SENT)
                    conn.attempt = conn.last_pkt + ATTEMPT_DELAY if conn.attempt is None else conn.attempt
                else:
                    if not ackf and peer.state == SYN_ACK_SENT and seq == ep.start & M32:
                        conn.is_partial = False
                        conn.flip()
                        peer.set_state(conn, ESTABLISHED)
                        conn.fps |= _ORIG
                    if peer.state == SYN_SENT:
                        peer.set_state(conn, ESTABLISHED)
                    ep.set_state(conn, ESTABLISHED)
            if fin:
                ep.set_state(conn, CLOSED)
                do_close = gen_event = True
            if rst:
                ep.set_state(conn, RESET)
                if is_orig:
                    reject = peer.state == ESTABLISHED
                else:
                    reject = peer.state in (SYN_SENT, SYN_ACK_SENT)
                do_close = True
                gen_event = not reject
            if ep.state == INACTIVE:
                if not is_orig and plen == 0 and conn.o.state == SYN_SENT:
                    pass          # an ACK before the SYN-ACK does not make a partial connection
                elif ackf and peer.state == ESTABLISHED:
                    ep.set_state(conn, ESTABLISHED)
                    conn.is_partial = False
                    conn.fps |= _ORIG if is_orig else _RESP
                else:
                    ep.set_state(conn, PARTIAL)
        elif st in (SYN_SENT, SYN_ACK_SENT):
            if fin:
                ep.set_state(conn, CLOSED)
                do_close = gen_event = True
            if rst:
                ep.set_state(conn, RESET)
                conn.active = False       # ConnectionReset
                do_close = True
        elif st in (ESTABLISHED, PARTIAL):
            if syn and st == PARTIAL and peer.state == INACTIVE and not ackf:
                ep.set_state(conn, SYN_SENT)
            if fin and not rst:
                ep.set_state(conn, CLOSED)
                if peer.state == RESET and peer.prev == CLOSED:
                    peer.set_state(conn, CLOSED)    # the peer's FIN then RST was a normal close
                do_close = gen_event = True
            if rst:
                pst, pprev = peer.state, peer.prev
                ep.set_state(conn, RESET)
                do_close = True
                if pst != RESET or pprev != ESTABLISHED:
                    conn.active = False
        elif st == CLOSED:
            if rst and peer.state != CLOSED:
                ep.set_state(conn, RESET)
                if not ep.did_close:
                    do_close = True
        return do_close, gen_event

    def _closed(self, conn: _Conn, ep: _Ep, peer: _Ep, gen_event: bool) -> None:
        if ep.did_close:
            return
        ep.did_close = True
        if ep.state == RESET or peer.did_close or peer.state == INACTIVE:
            if gen_event and (ep.prev != INACTIVE or peer.state != INACTIVE):
                conn.active = False           # ConnectionFinished
            conn.expire = []                  # CancelTimers
            conn.attempt = None
            conn.delete = conn.last_ts + CLOSE_DELAY
        elif ep.prev != INACTIVE:
            conn.expire.append(conn.last_ts + SESSION_TIMER)

    # ------------------------------------------------------------------ reassembly (gaps)
    def _data_sent(self, conn: _Conn, ep: _Ep, seq: int, n: int) -> None:
        if ep.skip:
            return
        acked = ep.ack - ep.start
        upper = seq + n
        if seq < acked:
            if upper <= acked:
                return
            seq = acked
        if upper <= ep.trim:
            return
        if seq < ep.trim:
            seq = ep.trim
        if seq <= ep.ra:
            if upper > ep.ra:
                ep.ra = upper
                if ep.blocks:
                    self._absorb(ep)
            return
        blocks = ep.blocks
        if blocks is None:
            blocks = ep.blocks = []
        blocks.append((seq, upper))
        blocks.sort()
        held = sum(e - s for s, e in blocks)
        if (ep.no_data_acked() and held > MAX_ABOVE_HOLE) or held > EXCESSIVE_DATA:
            ep.blocks = None
            ep.skip = True

    @staticmethod
    def _absorb(ep: _Ep) -> None:
        keep = []
        for s, e in ep.blocks:
            if s <= ep.ra:
                if e > ep.ra:
                    ep.ra = e
            else:
                keep.append((s, e))
        ep.blocks = keep or None

    def _ack_received(self, conn: _Conn, ep: _Ep, seq: int) -> None:
        """`ep` had data acknowledged up to relative `seq`: report what was never seen below it."""
        if ep.fin_cnt and seq >= ep.fin_seq:
            seq = ep.fin_seq - 1
        if seq <= ep.trim:
            return
        if seq > ep.ra:
            self._undelivered(conn, ep, seq)
        ep.trim = seq
        if ep.blocks:
            ep.blocks = [(max(s, seq), e) for s, e in ep.blocks if e > seq] or None

    def _undelivered(self, conn: _Conn, ep: _Ep, up_to: int) -> None:
        if up_to <= 2 and conn.is_partial:
            return
        if not ep.skip:
            if ep.blocks:
                for s, e in list(ep.blocks):
                    if s < ep.ra:
                        continue
                    if s >= up_to:
                        break
                    self._gap(conn, ep, s - ep.ra)
                    ep.ra = s
                    self._absorb(ep)
                    if not ep.blocks:
                        break
            if up_to > ep.ra:
                self._gap(conn, ep, up_to - ep.ra)
        if up_to > ep.ra:
            ep.ra = up_to

    @staticmethod
    def _gap(conn: _Conn, ep: _Ep, n: int) -> None:
        peer = conn.r if ep is conn.o else conn.o
        if ep.clean() and peer.clean():
            conn.scaled(ep, "g")
            conn.missed += n

    # ------------------------------------------------------------------ output
    @staticmethod
    def _record(c: _Conn) -> ZeekConn:
        o, r = c.o, c.r
        osz, rsz = o.size(r), r.size(o)
        hist = "".join(c.hist)
        dur_ns = c.last_ts - c.start_ts
        dur = dur_ns / NS if dur_ns > 0 else None
        return ZeekConn(
            ts=c.start_ts / NS, uid=make_uid(c.key, c.start_ts, c.first_idx),
            orig_h=ip_text(o.raw), orig_p=o.port, resp_h=ip_text(r.raw), resp_p=r.port, proto="tcp",
            service=None, duration=dur, orig_bytes=osz if dur else None, resp_bytes=rsz if dur else None,
            conn_state=conn_state_of(o.state, r.state, osz, rsz, hist), local_orig=None, local_resp=None,
            missed_bytes=c.missed, history=hist, orig_pkts=o.pkts, orig_ip_bytes=o.ipb, resp_pkts=r.pkts,
            resp_ip_bytes=r.ipb, tunnel_parents=sorted(c.tunnels) if c.tunnels else None, key=c.key, first_ns=c.first_pkt, last_ns=c.last_pkt,
            first_packet=c.first_idx, last_packet=c.last_idx, orig_state=STATE_NAMES[o.state],
            resp_state=STATE_NAMES[r.state], end_reason=c.reason)


def zeek_conns(batches) -> list[ZeekConn]:
    """Convenience: run a tracker over an iterable of batches."""
    zt = ZeekTracker()
    for b in batches:
        zt.feed_batch(b)
    return zt.finish()


def zeek_summary_for_flows(flows, zeek_conns: list[ZeekConn]) -> dict[int, tuple[str, str]]:
    """tcpfsm flow id -> (conn_state, history) of the Zeek connection that covers it.

    A flow maps to the Zeek connection on the same 4-tuple whose packet-time span overlaps the flow's the
    most (ties: the one starting nearest the flow's first packet). Flows with no such connection are
    left out (the caller keeps its own estimate). Also records the flow ids on each ZeekConn (`flows`).
    """
    by_key: dict[tuple, list[ZeekConn]] = {}
    for z in zeek_conns:
        by_key.setdefault(_key_of(z.orig_h, z.orig_p, z.resp_h, z.resp_p), []).append(z)
        z.flows = []
    out: dict[int, tuple[str, str]] = {}
    for f in flows:
        cands = by_key.get(_key_of(f.client_ip, f.client_port, f.server_ip, f.server_port))
        if not cands:
            continue
        best, best_score = None, None
        for z in cands:
            ov = min(f.last_ts, z.last_ns) - max(f.first_ts, z.first_ns)
            if ov < 0:
                continue
            score = (ov, -abs(z.first_ns - f.first_ts))
            if best_score is None or score > best_score:
                best, best_score = z, score
        if best is not None:
            best.flows.append(f.id)
            out[f.id] = (best.conn_state, best.history)
    return out


def _key_of(a: str, ap: int, b: str, bp: int) -> tuple:
    x, y = (a, ap), (b, bp)
    return (x, y) if x <= y else (y, x)
