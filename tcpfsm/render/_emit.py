"""JSON emitter kernel: a flow's transitions and its path record written as JSON bytes straight from
columns, byte for byte what `orjson.dumps` gives for the dicts tcpfsm/render/records.py and
tcpfsm/path/flows.py build (same key order, separators, float text and string escaping).

Owns the JSON text of numbers and of times: integers, and seconds from integer nanoseconds as orjson
prints the double `records.sec` makes of them (`sec_text`), in the range tests/test_emit.py proves equal;
anything outside it goes to the caller's `slow` function (orjson on `sec`). Must not: decide a record's
content (which keys, which values: records.py and path/flows.py do, and tests/test_emit.py holds the bytes
equal to `orjson.dumps` of their dicts on every capture) or encode strings itself (each distinct string is
encoded once by orjson and cached).

Why the decimal µs text is orjson's: below 2**32 s (|ns| < 4e18) a whole number of µs `us` gives the
double nearest to the decimal us / 10**6 (records.sec), a decimal of at most 16 significant digits whose
spacing (1e-6) is more than twice the double's (at most 2**-21 there), so it is the one shortest decimal
that reads back as that double: the digits orjson prints. orjson writes 1e-5 <= |x| < 1e16 as a plain
decimal (".0" for a whole number) and smaller ones as `de-6` (1 to 9 µs).

Cython pure-Python mode, like tcpfsm/track/_runs.py: compiled by setup.py into tcpfsm.render._emit_c
(tcpfsm/_kernels.py picks which form runs); the plain module runs and gives the same bytes. Every integer
is a declared C type; the buffer is a reused bytearray, grown when a flow would not fit.
"""
import cython
import orjson

i64 = cython.typedef(cython.longlong)

_SEC_LIMIT = cython.declare(i64, 4_000_000_000_000_000_000)   # |ns| below this: sec_text's proven range
_MAX_NUMBER = cython.declare(i64, 32)     # bytes a number or a time takes at most (orjson's included)
_MAX_TR = cython.declare(i64, 112)        # a transition's keys, separators and numbers, without its strings

_NULL = b"null"
_TRUE = b"true"
_FALSE = b"false"
_CLIENT = b'"client"'
_SERVER = b'"server"'


@cython.cfunc
@cython.boundscheck(False)
@cython.wraparound(False)
@cython.locals(buf=cython.uchar[::1], pos=i64, s=bytes, p=cython.p_uchar, n=i64, j=i64)
def _put(buf, pos, s) -> i64:
    """Copy `s` into buf at pos; the new position."""
    p = s
    n = len(s)
    for j in range(n):
        buf[pos + j] = p[j]
    return pos + n


@cython.cfunc
@cython.boundscheck(False)
@cython.wraparound(False)
@cython.locals(buf=cython.uchar[::1], pos=i64, v=i64, x=i64, d=i64, k=i64)
def _put_int(buf, pos, v) -> i64:
    """An integer's decimal text (v > -2**63)."""
    if v < 0:
        buf[pos] = 45                       # '-'
        pos += 1
        v = -v
    d = 1
    x = v
    while x >= 10:                          # at most 18 steps
        x //= 10
        d += 1
    for k in range(d):
        buf[pos + d - 1 - k] = 48 + v % 10
        v //= 10
    return pos + d


@cython.cfunc
@cython.boundscheck(False)
@cython.wraparound(False)
@cython.locals(buf=cython.uchar[::1], pos=i64, ns=i64, a=i64, us=i64, whole=i64, frac=i64, k=i64, d=i64)
def _put_sec(buf, pos, ns) -> i64:
    """orjson's text of records.sec(ns) at pos, the new position; -1 (nothing written) outside the proven
    range: not a whole number of µs, or |ns| >= 4e18."""
    if ns <= -_SEC_LIMIT or ns >= _SEC_LIMIT:
        return -1
    a = -ns if ns < 0 else ns
    if a % 1000 != 0:
        return -1
    us = a // 1000
    if ns < 0:
        buf[pos] = 45                       # '-'
        pos += 1
    whole = us // 1000000
    frac = us % 1000000
    if whole == 0 and 0 < frac < 10:        # below 1e-5: orjson's exponent form, "3e-6"
        buf[pos] = 48 + frac
        buf[pos + 1] = 101                  # 'e'
        buf[pos + 2] = 45
        buf[pos + 3] = 54                   # '6'
        return pos + 4
    pos = _put_int(buf, pos, whole)
    buf[pos] = 46                           # '.'
    pos += 1
    if frac == 0:
        buf[pos] = 48
        return pos + 1
    d = 6
    while frac % 10 == 0:                   # at most 5 steps: frac > 0
        frac //= 10
        d -= 1
    for k in range(d):
        buf[pos + d - 1 - k] = 48 + frac % 10
        frac //= 10
    return pos + d


def sec_text(ns: int) -> bytes | None:
    """orjson's text of records.sec(ns), or None outside the range this module proves (see the module doc)."""
    buf = bytearray(_MAX_NUMBER)
    end: i64 = _put_sec(buf, 0, ns) if -_SEC_LIMIT < ns < _SEC_LIMIT else -1
    return None if end < 0 else bytes(buf[:end])


@cython.final
@cython.cclass
class Emitter:
    """Writes one rendering's flow records, one at a time into a reused buffer: `head`, `transitions`,
    `raw` (text orjson made), `path`, then `end` returns the record's bytes. `states`: the JSON text of
    each state name, by its position in tcpfsm.fsm.State; `slow(ns)`: the JSON text of a time outside
    sec_text's range (orjson on records.sec). `causes` is the dict Connection.transition_rows interns the
    causes into; each is encoded once."""

    _buf = cython.declare(bytearray)
    _pos = cython.declare(i64)
    _states = cython.declare(list)
    _cause_text = cython.declare(list)
    causes = cython.declare(dict, visibility="readonly")
    _slow = cython.declare(object)
    _max_state = cython.declare(i64)
    _max_cause = cython.declare(i64)

    def __init__(self, states, slow):
        self._buf = bytearray(1 << 16)
        self._pos = 0
        self._states = list(states)
        self._cause_text = []
        self.causes = {}
        self._slow = slow
        self._max_state = max([len(s) for s in self._states])
        self._max_cause = 0

    @cython.cfunc
    @cython.locals(more=i64, need=i64)
    def _room(self, more) -> bytearray:
        """The buffer, with room for `more` bytes after what is written (kept when it grows)."""
        need = self._pos + more
        if len(self._buf) < need:
            grown = bytearray(2 * need)
            grown[:self._pos] = self._buf[:self._pos]
            self._buf = grown
        return self._buf

    @cython.cfunc
    @cython.locals(buf=cython.uchar[::1], pos=i64, ns=i64, end=i64)
    def _time(self, buf, pos, ns) -> i64:
        end = _put_sec(buf, pos, ns)
        if end >= 0:
            return end
        return _put(buf, pos, self._slow(ns))

    @cython.cfunc
    @cython.locals(buf=cython.uchar[::1], pos=i64, ns=i64)
    def _opt_time(self, buf, pos, ns) -> i64:
        """A time, or null where it is unknown (negative)."""
        return _put(buf, pos, _NULL) if ns < 0 else self._time(buf, pos, ns)

    @cython.locals(buf=cython.uchar[::1], pos=i64, flow_id=i64, client_port=i64, server_port=i64,
                   first_ns=i64, last_ns=i64, client_packets=i64, server_packets=i64, client_bytes=i64,
                   server_bytes=i64, client_state=i64, server_state=i64, client_alt=i64, server_alt=i64)
    def head(self, flow_id, client_ip: bytes, client_port, server_ip: bytes, server_port, role_inferred,
             first_ns, last_ns, client_packets, server_packets, client_bytes, server_bytes, client_state,
             server_state, client_alt, server_alt, conn_state: bytes, history: bytes) -> None:
        """Start a flow record: its keys before "transitions", as records.flow_record has them (the values
        of records._head_values: addresses, conn_state and history as their JSON text, states by position,
        -1 for no alternative)."""
        self._pos = 0
        buf = self._room(512 + len(client_ip) + len(server_ip) + len(conn_state) + len(history)
                         + 4 * self._max_state)
        pos = _put(buf, 0, b'{"id":')
        pos = _put_int(buf, pos, flow_id)
        pos = _put(buf, pos, b',"client":{"ip":')
        pos = _put(buf, pos, client_ip)
        pos = _put(buf, pos, b',"port":')
        pos = _put_int(buf, pos, client_port)
        pos = _put(buf, pos, b'},"server":{"ip":')
        pos = _put(buf, pos, server_ip)
        pos = _put(buf, pos, b',"port":')
        pos = _put_int(buf, pos, server_port)
        pos = _put(buf, pos, b'},"role_inferred":')
        pos = _put(buf, pos, _TRUE if role_inferred else _FALSE)
        pos = _put(buf, pos, b',"first_ts":')
        pos = self._time(buf, pos, first_ns)
        pos = _put(buf, pos, b',"last_ts":')
        pos = self._time(buf, pos, last_ns)
        pos = _put(buf, pos, b',"packets":{"client":')
        pos = _put_int(buf, pos, client_packets)
        pos = _put(buf, pos, b',"server":')
        pos = _put_int(buf, pos, server_packets)
        pos = _put(buf, pos, b'},"bytes":{"client":')
        pos = _put_int(buf, pos, client_bytes)
        pos = _put(buf, pos, b',"server":')
        pos = _put_int(buf, pos, server_bytes)
        pos = _put(buf, pos, b'},"states":{"client":')
        pos = _put(buf, pos, self._states[client_state])
        pos = _put(buf, pos, b',"server":')
        pos = _put(buf, pos, self._states[server_state])
        if client_alt >= 0 or server_alt >= 0:
            pos = _put(buf, pos, b',"alt":{')
            if client_alt >= 0:
                pos = _put(buf, pos, b'"client":')
                pos = _put(buf, pos, self._states[client_alt])
                if server_alt >= 0:
                    buf[pos] = 44                         # ','
                    pos += 1
            if server_alt >= 0:
                pos = _put(buf, pos, b'"server":')
                pos = _put(buf, pos, self._states[server_alt])
            buf[pos] = 125                                # '}'
            pos += 1
        pos = _put(buf, pos, b'},"conn_state":')
        pos = _put(buf, pos, conn_state)
        pos = _put(buf, pos, b',"history":')
        pos = _put(buf, pos, history)
        self._pos = pos

    @cython.locals(buf=cython.uchar[::1], pos=i64)
    def raw(self, text: bytes) -> None:
        """Append JSON text as it is (keys and values orjson made)."""
        buf = self._room(len(text))
        self._pos = _put(buf, self._pos, text)

    @cython.locals(buf=cython.uchar[::1], pos=i64)
    def end(self) -> bytes:
        """Close the record ('}') and return its bytes; the buffer is reused by the next."""
        buf = self._room(1)
        pos = self._pos
        buf[pos] = 125                                    # '}'
        self._pos = 0
        return bytes(self._buf[:pos + 1])

    @cython.cfunc
    @cython.locals(buf=cython.uchar[::1], pos=i64, server=i64, old=i64, new=i64, packet=i64, cause=bytes, alt=i64,
                   retracted=i64)
    def _transition_fields(self, buf, pos, server, old, new, packet, cause, alt, retracted) -> i64:
        """A transition record's keys after "ts" and its closing brace (records.transition_record's)."""
        pos = _put(buf, pos, b',"endpoint":')
        pos = _put(buf, pos, _SERVER if server else _CLIENT)
        pos = _put(buf, pos, b',"from":')
        pos = _put(buf, pos, self._states[old])
        pos = _put(buf, pos, b',"to":')
        pos = _put(buf, pos, self._states[new])
        pos = _put(buf, pos, b',"packet":')
        pos = _put(buf, pos, _NULL) if packet < 0 else _put_int(buf, pos, packet)
        pos = _put(buf, pos, b',"cause":')
        pos = _put(buf, pos, cause)
        if alt >= 0:
            pos = _put(buf, pos, b',"alt":')
            pos = _put(buf, pos, self._states[alt])
        if retracted:
            pos = _put(buf, pos, b',"retracted":true')
        buf[pos] = 125                                    # '}'
        return pos + 1

    @cython.locals(buf=cython.uchar[::1], pos=i64, ts=i64, server=i64, old=i64, new=i64, packet=i64, alt=i64,
                   retracted=i64)
    def transition_event(self, connection: bytes, ts, server, old, new, packet, cause: bytes, alt,
                         retracted) -> bytes:
        """One jsonl transition event and its newline, as records.transition_event's dict prints:
        `connection` is the JSON text of records.connection(f) without its braces, states by position
        (alt -1: none), packet -1: a timer, `cause` its JSON text. Leaves a record being written alone."""
        need = self._pos + 256 + len(connection) + len(cause) + 3 * self._max_state
        if len(self._buf) < need:
            self._room(need - self._pos)
        buf = self._buf
        pos = _put(buf, self._pos, b'{"event":"transition","ts":')
        pos = self._time(buf, pos, ts)
        buf[pos] = 44                                     # ','
        pos = _put(buf, pos + 1, connection)
        pos = self._transition_fields(buf, pos, server, old, new, packet, cause, alt, retracted)
        buf[pos] = 10                                     # '\n'
        return bytes(self._buf[self._pos:pos + 1])

    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(rows=cython.longlong[::1], n=i64, i=i64, r=i64, pos=i64, bits=i64,
                   buf=cython.uchar[::1])
    def transitions(self, rows, n) -> None:
        """Append ',"transitions":' and the JSON list of n transitions from Connection.transition_rows'
        columns (`rows`), as orjson.dumps([records.transition_record(t) ...]) prints it."""
        if len(self._cause_text) < len(self.causes):      # causes first seen by this batch
            for c in list(self.causes)[len(self._cause_text):]:
                t = bytes(memoryview(orjson.dumps(c)))   # (its own size: orjson's bytes hold ~4 KB each)
                self._cause_text.append(t)
                self._max_cause = max(self._max_cause, len(t))
        buf = self._room(32 + n * (_MAX_TR + self._max_cause + 3 * self._max_state))
        pos = _put(buf, self._pos, b',"transitions":[')
        for i in range(n):
            r = i * 4
            bits = rows[r + 3]
            if i:
                buf[pos] = 44                             # ','
                pos += 1
            pos = _put(buf, pos, b'{"ts":')
            pos = self._time(buf, pos, rows[r])
            pos = self._transition_fields(buf, pos, (bits >> 24) & 1, bits & 0xFF, (bits >> 8) & 0xFF,
                                          rows[r + 1], self._cause_text[rows[r + 2]], ((bits >> 16) & 0xFF) - 1,
                                          (bits >> 25) & 1)
        buf[pos] = 93                                     # ']'
        self._pos = pos + 1

    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(m=cython.longlong[:, ::1], row=i64, pos=i64, buf=cython.uchar[::1], n=i64, v=i64)
    def path(self, m, row, median: bytes, p95: bytes, jitter: bytes, icmp: bytes) -> None:
        """Append ',"path":' and the JSON of PathFacts.record(row) from PathFacts.json_columns (`m`: its
        matrix, columns in path/flows.JSON_COLUMNS order; `median`, `p95`, `jitter`: the row's texts) and
        `icmp`, the JSON of the record's ICMP list."""
        buf = self._room(1024 + len(median) + len(p95) + len(jitter) + len(icmp))
        pos = _put(buf, self._pos, b',"path":{"handshake_rtt":')
        pos = self._opt_time(buf, pos, m[row, 0])
        pos = _put(buf, pos, b',"handshake_legs":{"syn_to_synack":')
        pos = self._opt_time(buf, pos, m[row, 1])
        pos = _put(buf, pos, b',"synack_to_ack":')
        pos = self._opt_time(buf, pos, m[row, 2])
        n = m[row, 3]
        if n:
            pos = _put(buf, pos, b'},"rtt":{"min":')
            pos = self._opt_time(buf, pos, m[row, 4])
            pos = _put(buf, pos, b',"median":')
            pos = _put(buf, pos, median)
            pos = _put(buf, pos, b',"p95":')
            pos = _put(buf, pos, p95)
            pos = _put(buf, pos, b',"max":')
            pos = self._opt_time(buf, pos, m[row, 5])
            pos = _put(buf, pos, b',"jitter":')
            pos = _put(buf, pos, jitter)
            pos = _put(buf, pos, b',"samples":')
            pos = _put_int(buf, pos, n)
        else:
            pos = _put(buf, pos, b'},"rtt":{"min":null,"median":null,"p95":null,"max":null,"jitter":null,'
                                 b'"samples":0')
        pos = _put(buf, pos, b'},"retransmissions":{"client":{"segments":')
        pos = _put_int(buf, pos, m[row, 6])
        pos = _put(buf, pos, b',"bytes":')
        pos = _put_int(buf, pos, m[row, 7])
        pos = _put(buf, pos, b'},"server":{"segments":')
        pos = _put_int(buf, pos, m[row, 8])
        pos = _put(buf, pos, b',"bytes":')
        pos = _put_int(buf, pos, m[row, 9])
        pos = _put(buf, pos, b'}},"zero_window":{"client":{"count":')
        pos = _put_int(buf, pos, m[row, 10])
        pos = _put(buf, pos, b',"seconds":')
        pos = self._opt_time(buf, pos, m[row, 11])
        pos = _put(buf, pos, b'},"server":{"count":')
        pos = _put_int(buf, pos, m[row, 12])
        pos = _put(buf, pos, b',"seconds":')
        pos = self._opt_time(buf, pos, m[row, 13])
        pos = _put(buf, pos, b'}},"options":{"mss":{"client":')
        v = m[row, 14]
        pos = _put(buf, pos, _NULL) if v == 0 else _put_int(buf, pos, v)      # `mss or None`
        pos = _put(buf, pos, b',"server":')
        v = m[row, 15]
        pos = _put(buf, pos, _NULL) if v == 0 else _put_int(buf, pos, v)
        pos = _put(buf, pos, b'},"window_scale":')
        if m[row, 16]:
            pos = _put(buf, pos, b'{"client":')
            pos = _put_int(buf, pos, m[row, 17])
            pos = _put(buf, pos, b',"server":')
            pos = _put_int(buf, pos, m[row, 18])
            pos = _put(buf, pos, b'}')
        else:
            pos = _put(buf, pos, _NULL)
        pos = _put(buf, pos, b',"sack":')
        pos = _put(buf, pos, _TRUE if m[row, 19] else _FALSE)
        pos = _put(buf, pos, b',"timestamps":')
        pos = _put(buf, pos, _TRUE if m[row, 20] else _FALSE)
        pos = _put(buf, pos, b'},"keepalives":{"client":')
        pos = _put_int(buf, pos, m[row, 21])
        pos = _put(buf, pos, b',"server":')
        pos = _put_int(buf, pos, m[row, 22])
        pos = _put(buf, pos, b'},"ttl":{"client":')
        pos = self._opt_int(buf, pos, m[row, 23])
        pos = _put(buf, pos, b',"server":')
        pos = self._opt_int(buf, pos, m[row, 24])
        pos = _put(buf, pos, b'},"hops":{"client":')
        pos = self._opt_int(buf, pos, m[row, 25])
        pos = _put(buf, pos, b',"server":')
        pos = self._opt_int(buf, pos, m[row, 26])
        pos = _put(buf, pos, b'},"icmp":')
        pos = _put(buf, pos, icmp)
        buf[pos] = 125                                    # '}'
        self._pos = pos + 1

    @cython.cfunc
    @cython.locals(buf=cython.uchar[::1], pos=i64, v=i64)
    def _opt_int(self, buf, pos, v) -> i64:
        """An integer, or null where it is unknown (negative)."""
        return _put(buf, pos, _NULL) if v < 0 else _put_int(buf, pos, v)
