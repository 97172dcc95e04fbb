"""Run kernel: the tracker's vectorized path, the per-row work numpy cannot express as one call.

Owns: the connection record (`Flow`, with its addresses' text: `ip_text`, `hostport`, `service_text`);
the rows of a batch grouped by their flow key in one pass over a hash table (`group_rows`); the
table's touched flows drained (`drain_touched`); connections that are one SYN so far held as records (`Attempt`, `hold_lone_syns`); the
cap's choice of victims and their eviction (`oldest_half_open`, `evict`); numbering new connections
(`number`). The walk over each group's segments, firing the timer heap and settling at the end live beside
the machine they drive (tcpfsm/fsm/machine.py `walk_groups`, `fire_timers`, `settle_all`: there their
calls into a connection are C calls). Must not: decide
which connection a segment belongs to (tcpfsm/track/flowtable.py) or any state (tcpfsm/fsm); flows are
only read and stamped (`timer_due`).

Cython pure-Python mode, like tcpfsm/capture/_decode.py: compiled by setup.py into tcpfsm.track._runs_c
(tcpfsm/_kernels.py picks which form runs); the plain module is the readable reference and the tests
hold the two equal. Every integer is a declared C type; arrays are C-contiguous int64 views.
"""

import functools
import ipaddress
from dataclasses import dataclass
from socket import AF_INET as _AF_INET, inet_ntop as _ntop

import cython
import numpy as np

if cython.compiled:
    from cython.cimports.libc.string import memcmp, memcpy

from ..fsm import Connection, Observer, settle_all
from ..fsm.states import State

i64 = cython.typedef(cython.longlong)
u64 = cython.typedef(cython.ulonglong)
# FNV-1a over 64 bits fed 64-bit words compiled, 32-bit ones uncompiled (only the hash table's slots differ,
# never the groups), then one multiply-xorshift round (FNV's offset basis with the top
# bit cleared: a literal above 2**63 would not convert); C arithmetic wraps at 2**64, the uncompiled module
# masks its Python ints to the same values
_FNV_OFFSET = cython.declare(cython.ulonglong, 0x4BF29CE484222325)
_FNV_PRIME = cython.declare(cython.ulonglong, 0x100000001B3)
_MIX = cython.declare(cython.ulonglong, 0x2545F4914F6CDD1D)   # (xorshift64*'s multiplier: the final mix)


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.ccall
def group_rows(key: cython.const[cython.uchar][:, ::1], grow: cython.longlong[::1], first: cython.longlong[::1],
               perm: cython.longlong[::1], starts: cython.longlong[::1], slots: cython.longlong[::1]) -> i64:
    """Group the rows of a batch by key (row i's key is key[i, :]), groups numbered in order of their first
    row: grow[i] = row i's group, first[g] = group g's first row. perm lists the rows group by group, each
    group's rows in their order (a stable counting sort); group g's rows are perm[starts[g]:starts[g + 1]].
    `slots`: scratch for the open-addressing hash table, a power of two longer than the rows, filled with -1.
    Returns the number of groups. (What np.unique and two stable argsorts gave, in O(rows).)"""
    n: i64 = key.shape[0]
    w: i64 = key.shape[1]
    mask: i64 = slots.shape[0] - 1
    ngroups: i64 = 0
    i: i64
    j: i64
    g: i64
    r: i64
    h: u64
    v8: u64 = 0
    same: cython.bint
    with cython.nogil:                 # (plain C: the read-ahead worker groups a batch beside the tracker)
        for i in range(n):
            h = _FNV_OFFSET
            j = 0
            if cython.compiled:                 # eight bytes a step (one load each): the slots differ, not the groups
                while j + 8 <= w:
                    memcpy(cython.address(v8), cython.address(key[i, j]), 8)
                    h = (h ^ v8) * _FNV_PRIME
                    j += 8
            while j + 4 <= w:                   # four bytes a step: a quarter of the multiplications
                h = (h ^ (cython.cast(u64, key[i, j]) | (cython.cast(u64, key[i, j + 1]) << 8)
                          | (cython.cast(u64, key[i, j + 2]) << 16) | (cython.cast(u64, key[i, j + 3]) << 24))) * _FNV_PRIME
                if not cython.compiled:
                    h &= (1 << 64) - 1
                j += 4
            while j < w:
                h = (h ^ cython.cast(u64, key[i, j])) * _FNV_PRIME
                if not cython.compiled:
                    h &= (1 << 64) - 1
                j += 1
            # a product carries only upward: fold the high bits into the low ones the slot is taken from
            h ^= h >> 32
            h *= _MIX
            if not cython.compiled:
                h &= (1 << 64) - 1
            h ^= h >> 29
            s: i64 = cython.cast(i64, h & cython.cast(u64, mask))
            while True:
                g = slots[s]
                if g < 0:                       # a new key: a new group
                    g = ngroups
                    ngroups += 1
                    slots[s] = g
                    first[g] = i
                    break
                r = first[g]
                if cython.compiled:             # (a byte at a time was a third of the grouping)
                    same = memcmp(cython.address(key[r, 0]), cython.address(key[i, 0]), w) == 0
                else:
                    same = True
                    for j in range(w):
                        if key[r, j] != key[i, j]:
                            same = False
                            break
                if same:
                    break
                s = (s + 1) & mask
            grow[i] = g
        # counting sort: starts[g] = rows of groups before g; then each row to its group's next place
        for g in range(ngroups + 1):
            starts[g] = 0
        for i in range(n):
            starts[grow[i] + 1] += 1
        for g in range(ngroups):
            starts[g + 1] += starts[g]
        for g in range(ngroups):
            slots[g] = starts[g]                # (the table is done with: reused as each group's fill pointer)
        for i in range(n):
            g = grow[i]
            perm[slots[g]] = i
            slots[g] += 1
    return ngroups



@cython.locals(e=i64, n=i64, k=i64)
def drain_touched(touched: set, out: list) -> None:
    """The transitions each flow in `touched` made since it was last drained (those past `Flow.emitted`), as
    (flow, transition) pairs appended to `out`, each flow's in its order (FlowTable.drain)."""
    for flow in touched:
        trs = flow.conn.transitions
        e = flow.emitted
        n = len(trs)
        if e < n:
            for k in range(e, n):
                out.append((flow, trs[k]))
            flow.emitted = n


# -- attempts: connections that are one SYN so far ---------------------------------------------------------
_SYN_SENT = State.SYN_SENT
# the columns of `hold_lone_syns`'s value table, one row per candidate group
HOLD_COLUMNS = ("row", "clock", "index", "lo", "flags", "seq", "ack", "win", "wscale", "ip_len", "ipid", "sport",
                "dport")


_MAPPED = b"\x00" * 10 + b"\xff\xff"


@functools.lru_cache(maxsize=4096)
def ip_text(raw: bytes) -> str:
    """16-byte column value -> printable address (IPv4-mapped shown as IPv4). The recent ones are cached:
    flows keep their addresses as bytes and make this text when asked, and the piles and aggregates that
    keep it then share one string per host instead of one per connection."""
    if raw[:12] == _MAPPED:
        return _ntop(_AF_INET, raw[12:])
    return str(ipaddress.IPv6Address(raw))


def hostport(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@functools.lru_cache(maxsize=4096)
def service_text(raw: bytes, port: int) -> str:
    """A server's 16-byte address and port -> "ip:port", the recent ones cached: servers are few, and every
    attempt of a flood names the same one (the aggregates key their services by this text)."""
    return hostport(ip_text(raw), port)


@dataclass(slots=True)
class FlowExtra:
    """What few flows have (`Flow.reuse_of` ... `Flow.tunnels`): one slot on every flow, not six."""
    reuse_of: int | None = None
    reuse_ts: int | None = None
    reuse_packet: int | None = None
    reuse_endpoint: str | None = None
    zeek: tuple[str, str] | None = None
    tunnels: set[int] | None = None


@cython.final
@cython.cclass
class Flow:
    """One TCP connection: identity, roles, and its pair of endpoint machines (tcpfsm/track/flowtable.py
    decides which connection a segment belongs to and makes these). Compact: the addresses are kept as the
    capture's 16-byte values, their text (`client_ip`, `client`...) is made when asked for, and what few
    flows have (reuse of a 4-tuple in TIME_WAIT, Zeek's view, tunnels) is one FlowExtra when they have it.
    Compiled, an extension type whose numbers are C fields: made once per connection (a flood's hundreds of
    thousands), where a slotted dataclass ran its generated `__init__` in Python (~3,000 instructions a
    flow, against ~600)."""

    id = cython.declare(cython.longlong, visibility="public")
    client_port = cython.declare(cython.longlong, visibility="public")
    server_port = cython.declare(cython.longlong, visibility="public")
    role_inferred = cython.declare(cython.bint, visibility="public")
    conn = cython.declare(object, visibility="public")
    first_ts = cython.declare(cython.longlong, visibility="public")
    last_ts = cython.declare(cython.longlong, visibility="public")
    first_packet = cython.declare(cython.longlong, visibility="public")
    client_raw = cython.declare(object, visibility="public")
    server_raw = cython.declare(object, visibility="public")
    client_is_lo = cython.declare(cython.bint, visibility="public")  # the client is the lower (address, port)
    # its findings (detect sets a list): none yet is the shared empty tuple, not a list per connection
    anomalies = cython.declare(object, visibility="public")
    emitted = cython.declare(cython.longlong, visibility="public")   # transitions already handed out (drain)
    timer_due = cython.declare(object, visibility="public")   # the due time last put on the table's timer heap
    _extra = cython.declare(object)                            # a FlowExtra, for the few flows that have one
    if cython.compiled:
        __weakref__ = cython.declare(object)                   # (the timer heap holds weak references)

    def __init__(self, id, client_port, server_port, role_inferred, conn, first_ts, last_ts, first_packet,
                 client_raw=b"", server_raw=b"", client_is_lo=True):
        self.id = id
        self.client_port = client_port
        self.server_port = server_port
        self.role_inferred = role_inferred
        self.conn = conn
        self.first_ts = first_ts
        self.last_ts = last_ts
        self.first_packet = first_packet
        self.client_raw = client_raw
        self.server_raw = server_raw
        self.client_is_lo = client_is_lo
        self.anomalies = ()
        self.emitted = 0
        self.timer_due = None
        self._extra = None

    def __reduce__(self):
        """Pickled (the distributed analysis moves flows between processes) as its fields."""
        return (_flow_from_state, (self.id, self.client_port, self.server_port, self.role_inferred, self.conn,
                                   self.first_ts, self.last_ts, self.first_packet, self.client_raw,
                                   self.server_raw, self.client_is_lo, self.anomalies, self.emitted,
                                   self.timer_due, self._extra))

    def __repr__(self) -> str:
        return f"Flow(id={self.id}, {self.client} -> {self.server}, first_ts={self.first_ts})"

    @cython.cfunc
    def _more(self):
        if self._extra is None:
            self._extra = FlowExtra()
        return self._extra

    @property
    def reuse_of(self):
        """id of the flow whose TIME_WAIT this one reused"""
        return None if self._extra is None else self._extra.reuse_of

    @reuse_of.setter
    def reuse_of(self, value):
        if value is not None or self._extra is not None:
            self._more().reuse_of = value

    @property
    def reuse_ts(self):
        """when (ns) it reused that TIME_WAIT"""
        return None if self._extra is None else self._extra.reuse_ts

    @reuse_ts.setter
    def reuse_ts(self, value):
        if value is not None or self._extra is not None:
            self._more().reuse_ts = value

    @property
    def reuse_packet(self):
        """the SYN that reused it (capture index)"""
        return None if self._extra is None else self._extra.reuse_packet

    @reuse_packet.setter
    def reuse_packet(self, value):
        if value is not None or self._extra is not None:
            self._more().reuse_packet = value

    @property
    def reuse_endpoint(self):
        """which endpoint of the old flow was in TIME_WAIT"""
        return None if self._extra is None else self._extra.reuse_endpoint

    @reuse_endpoint.setter
    def reuse_endpoint(self, value):
        if value is not None or self._extra is not None:
            self._more().reuse_endpoint = value

    @property
    def zeek(self):
        """(conn_state, history) from the Zeek tracker, when it ran"""
        return None if self._extra is None else self._extra.zeek

    @zeek.setter
    def zeek(self, value):
        if value is not None or self._extra is not None:
            self._more().zeek = value

    @property
    def tunnels(self):
        """encapsulations it was seen in (ids into CaptureInfo.tunnels)"""
        return None if self._extra is None else self._extra.tunnels

    @tunnels.setter
    def tunnels(self, value):
        if value is not None or self._extra is not None:
            self._more().tunnels = value

    @property
    def transitions(self) -> list:
        return self.conn.transitions

    @property
    def client_ip(self) -> str:
        return ip_text(self.client_raw)

    @property
    def server_ip(self) -> str:
        return ip_text(self.server_raw)

    @property
    def client(self) -> str:
        return hostport(ip_text(self.client_raw), self.client_port)

    @property
    def server(self) -> str:
        return service_text(self.server_raw, self.server_port)

    def endpoints(self, from_client: bool) -> tuple:
        """(src, sport, dst, dport) of a segment sent by the client (True) or the server."""
        if from_client:
            return self.client_raw, self.client_port, self.server_raw, self.server_port
        return self.server_raw, self.server_port, self.client_raw, self.client_port

    def state(self, role: str):
        return (self.conn.client if role == "client" else self.conn.server).state

    def finished(self) -> bool:
        return self.conn.finished()


@cython.locals(f=Flow)
def _flow_from_state(*fields) -> Flow:
    """A pickled Flow back (`Flow.__reduce__`)."""
    f = Flow(*fields[:11])
    f.anomalies, f.emitted, f.timer_due, f._extra = fields[11], fields[12], fields[13], fields[14]
    return f


# Ports that are services even when above 1024 (for midstream role inference).
SERVICE_PORTS = frozenset({
    1080, 1433, 1521, 2049, 2181, 2379, 3000, 3128, 3306, 3389, 5000, 5432, 5672, 5900, 6379, 6443, 8000,
    8008, 8080, 8081, 8443, 8888, 9000, 9042, 9090, 9092, 9200, 9300, 11211, 15672, 27017,
})
_SYN = cython.declare(cython.longlong, 0x02)
_ACK = cython.declare(cython.longlong, 0x10)


@cython.ccall
@cython.returns(cython.bint)
@cython.locals(a=i64, b=i64, a_svc=cython.bint, b_svc=cython.bint)
def is_service(a, b):
    """Is port `a` (the sender's) more likely the server's than port `b`?"""
    a_svc = a < 1024 or a in SERVICE_PORTS
    b_svc = b < 1024 or b in SERVICE_PORTS
    if a_svc != b_svc:
        return a_svc
    return a < b


@cython.ccall
@cython.locals(fid=i64, ts=i64, idx=i64, cport=i64, sport=i64, inferred=cython.bint, client_is_lo=cython.bint,
               f=Flow)
def make_flow(fid, ts, idx, client, cport, server, sport, inferred, client_is_lo, hosts: dict, profile, point):
    """A new connection's Flow and machine (`profile`, capture point `point`), not yet started or tracked.
    `hosts` interns the recent addresses: a flow's 16-byte addresses are slices of a batch, and the
    connections of a host (a server's thousands) would each keep their own copy (49 bytes each); bounded,
    since a spoofed flood's sources are each seen once."""
    if len(hosts) >= 4096:
        hosts.clear()
    f = Flow.__new__(Flow)
    f.id = fid
    f.client_port = cport
    f.server_port = sport
    f.role_inferred = inferred
    f.conn = Connection(profile, Observer(point))
    f.first_ts = ts
    f.last_ts = ts
    f.first_packet = idx
    f.client_raw = hosts.setdefault(client, client)
    f.server_raw = hosts.setdefault(server, server)
    f.client_is_lo = client_is_lo
    f.anomalies = ()
    f.emitted = 0
    f.timer_due = None
    f._extra = None
    return f


@cython.ccall
@cython.locals(fid=i64, ts=i64, idx=i64, sport=i64, dport=i64, flags=i64, lo_src=cython.bint, cport=i64,
               sport_=i64, inferred=cython.bint, from_client=cython.bint, f=Flow)
def new_flow(fid, key, ts, idx, src, sport, dst, dport, flags, lo_src, pending, row, current: dict, detached: set,
             hosts: dict, profile, point):
    """The connection segment (src, sport) -> (dst, dport) with `flags` starts on 4-tuple `key`, as flow
    `fid`: who is the client (a SYN's sender; a SYN+ACK's receiver; midstream, the side whose port is not a
    service's: `role_inferred`), its Flow made and started, and put in `current` (the one it replaces on
    the 4-tuple goes to `detached`). `pending`, when not None: (row, flow) is added, for the batch's
    numbering (FlowTable._new_flow is the one caller outside the vectorized walk)."""
    if flags & _SYN and not flags & _ACK:
        client, cport, server, sport_, inferred = src, sport, dst, dport, False
    elif flags & _SYN:
        client, cport, server, sport_, inferred = dst, dport, src, sport, True
    else:
        if is_service(sport, dport):
            client, cport, server, sport_ = dst, dport, src, sport
        else:
            client, cport, server, sport_ = src, sport, dst, dport
        inferred = True
    from_client = client == src and cport == sport
    f = make_flow(fid, ts, idx, client, cport, server, sport_, inferred, lo_src == from_client, hosts, profile, point)
    f.conn.start(ts, from_client, flags)
    if pending is not None:
        pending.append((row, f))
    old = current.get(key)
    if old is not None:
        detached.add(old)      # replaced on its 4-tuple: still to be evicted once finished
    current[key] = f
    return f


@cython.final
@cython.cclass
class Attempt:
    """A connection that so far is one SYN and nothing else -- what a spoofed flood is made of, millions of
    them, each evicted unanswered -- held as this record in the flow table until it becomes more
    (tcpfsm/track/flowtable.py, `FlowTable(attempts=True)`): its next segment, its SYN_SENT timer coming
    due, an ICMP error quoting it or the capture's end turns it into the Flow it stands for
    (`FlowTable.expand`: the same machine fed the same SYN, so nothing downstream can tell); evicted over the
    cap first, it is summarised as it is (`Aggregator.add_attempts`). Meanwhile it stands in for that flow
    where the table's consumers read one: its id, hosts, ports and times (the piles, the cap, the
    aggregator) and, as its own only transition, CLOSED -> SYN_SENT at `ts` by its client (`ts`, `endpoint`,
    `new`: what `FlowTable.drain` hands the piles). `fate`: 0 held, 1 expanded (into `flow`), 2 evicted."""

    id = cython.declare(cython.longlong, visibility="public")
    key = cython.declare(object, visibility="public")
    ts = cython.declare(cython.longlong, visibility="public")
    packet = cython.declare(cython.longlong, visibility="public")
    lo_src = cython.declare(cython.bint, visibility="public")
    flags = cython.declare(cython.longlong, visibility="public")
    seq = cython.declare(cython.longlong, visibility="public")
    ack = cython.declare(cython.longlong, visibility="public")
    win = cython.declare(cython.longlong, visibility="public")
    wscale = cython.declare(cython.longlong, visibility="public")
    ip_len = cython.declare(cython.longlong, visibility="public")
    ipid = cython.declare(cython.longlong, visibility="public")
    client_raw = cython.declare(object, visibility="public")
    client_port = cython.declare(cython.longlong, visibility="public")
    server_raw = cython.declare(object, visibility="public")
    server_port = cython.declare(cython.longlong, visibility="public")
    due = cython.declare(cython.longlong, visibility="public")
    fate = cython.declare(cython.int, visibility="public")
    drained = cython.declare(cython.bint, visibility="public")
    flow = cython.declare(object, visibility="public")

    def __init__(self, key, ts, packet, lo_src, flags, seq, ack, win, wscale, ip_len, ipid, src, sport, dst, dport,
                 due):
        self.id = -1
        self.key = key
        self.ts = ts
        self.packet = packet
        self.lo_src = lo_src
        self.flags = flags
        self.seq = seq
        self.ack = ack
        self.win = win
        self.wscale = wscale
        self.ip_len = ip_len
        self.ipid = ipid
        self.client_raw = src
        self.client_port = sport
        self.server_raw = dst
        self.server_port = dport
        self.due = due
        self.fate = 0
        self.drained = False
        self.flow = None

    @property
    def first_ts(self):
        return self.ts

    @property
    def last_ts(self):
        return self.ts

    @property
    def endpoint(self):
        return "client"

    @property
    def new(self):
        return _SYN_SENT

    @property
    def role_inferred(self):
        return False

    def finished(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"Attempt(id={self.id}, client port {self.client_port} -> server port {self.server_port}, " \
               f"ts={self.ts}, fate={self.fate})"


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.ccall
def hold_lone_syns(groups: cython.const[cython.longlong][::1], vals: cython.const[cython.longlong][:, ::1],
                   src: bytes, dst: bytes, gkeys: list, flows: list, gone: dict, pending: list, lane, fresh: list,
                   wait: i64) -> i64:
    """Hold each candidate group (`groups`: one SYN each, `vals` its row in HOLD_COLUMNS, `src`/`dst` the
    rows' 16-byte addresses end to end) whose 4-tuple has no connection (`flows[g]` None) as an Attempt,
    `flows[g]` (`walk_groups` puts it in the table at its turn), listed for numbering (`pending`, by row),
    for its timer (`lane`) and for the next drain (`fresh`). A SYN on the 4-tuple of a connection evicted
    unfinished (`gone`) starts a new one there. Returns how many were held."""
    n: i64 = groups.shape[0]
    j: i64
    g: i64
    r: i64
    made: i64 = 0
    a: Attempt
    if not cython.compiled:              # (Python ints, as the compiled form reads C integers)
        vals = memoryview(vals)
    for j in range(n):                   # (bounded: one turn a candidate)
        g = groups[j]
        if flows[g] is not None:
            continue
        key = gkeys[g]
        if gone and key in gone:
            del gone[key]
        r = j * 16
        a = Attempt.__new__(Attempt)
        a.id = -1
        a.key = key
        a.ts = vals[j, 1]
        a.packet = vals[j, 2]
        a.lo_src = vals[j, 3] != 0
        a.flags = vals[j, 4]
        a.seq = vals[j, 5]
        a.ack = vals[j, 6]
        a.win = vals[j, 7]
        a.wscale = vals[j, 8]
        a.ip_len = vals[j, 9]
        a.ipid = vals[j, 10]
        a.client_raw = src[r:r + 16]
        a.client_port = vals[j, 11]
        a.server_raw = dst[r:r + 16]
        a.server_port = vals[j, 12]
        a.due = a.ts + wait
        a.fate = 0
        a.drained = False
        a.flow = None
        flows[g] = a
        pending.append((vals[j, 0], a))
        lane.append(a)
        fresh.append(a)
        made += 1
    return made


# -- the cap: which connections leave, and their leaving --------------------------------------------------
@cython.boundscheck(False)
@cython.wraparound(False)
@cython.ccall
def oldest_half_open(tracked: list, excess: i64, half: i64, half_open) -> tuple:
    """The `excess` half-open connections of `tracked` (Flows and Attempts; `half_open(flow)` decides for a
    Flow, an Attempt always is one) silent longest, ties in list order, as indices into it; and how many
    half-open ones were met walking oldest first -- the walk stops once the victims are found and more than
    `half` were met (FlowTable.enforce_cap's question: do attempts fill over half the cap?)."""
    n: i64 = len(tracked)
    i: i64
    j: i64
    attempts: i64 = 0
    last = np.empty(n, np.int64)
    lv: i64[::1] = last
    for i in range(n):                   # (bounded: one turn a connection)
        f = tracked[i]
        if type(f) is Attempt:
            lv[i] = cython.cast(Attempt, f).ts
        else:
            lv[i] = f.last_ts
    order = np.argsort(last, kind="stable").astype(np.int64)
    ov: i64[::1] = order
    victims = []
    for j in range(n):                   # (bounded)
        i = ov[j]
        f = tracked[i]
        if type(f) is Attempt or half_open(f):
            attempts += 1
            if len(victims) < excess:
                victims.append(i)
            elif attempts > half:
                break
    return victims, attempts


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.ccall
def evict(keys: list, tracked: list, victims: list, clock: i64, settled: i64, current: dict, gone: dict,
          detached: set, touched: set, reasons: dict, reason_of) -> tuple:
    """Connections leaving the table over its cap (FlowTable.enforce_cap): `victims` index `keys` and
    `tracked`. A Flow's machine is settled at `clock` first (no more packets will be seen for it: decide what
    is open; `touched` if that moved it); an Attempt (whose timer is not due) is marked evicted. Each leaves
    `current` and `detached`; an unfinished one's key goes to the end of `gone` (its later segments are its
    own; an attempt's key cannot be there already: `hold_lone_syns` took it out). `reasons` counts why: `reason_of(key, flow)`, or without it "half_open"
    when silent since `settled` and "forced" when younger. Returns (the flows and attempts in victim order,
    how many attempts left)."""
    out = []
    i: i64
    last: i64
    held: i64 = 0
    fin: cython.bint
    a: Attempt
    for i in victims:                    # (bounded: one turn a victim)
        k = keys[i]
        f = tracked[i]
        if type(f) is Attempt:
            a = f
            a.fate = 2
            held += 1
            last = a.ts
            fin = False
        else:
            settle_all([f], clock, touched)
            last = f.last_ts
            fin = f.finished()
        if reason_of is not None:
            reason = reason_of(k, f)
        else:
            reason = "half_open" if last <= settled else "forced"
        reasons[reason] = reasons.get(reason, 0) + 1
        del current[k]
        out.append(f)
        if not fin:
            if type(f) is not Attempt and k in gone:
                del gone[k]
            gone[k] = None
        detached.discard(f)
    return out, held


@cython.ccall
def number(pending: list, created: i64) -> i64:
    """Number a batch's new connections (`pending`: (row, Flow or Attempt), in row order) after the `created`
    before them; returns the last number given."""
    n: i64 = len(pending)
    i: i64
    for i in range(n):                   # (bounded: one turn a new connection)
        created += 1
        pending[i][1].id = created
    return created
