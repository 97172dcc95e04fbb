"""JSON emitter kernel: a flow's record (and a jsonl transition event) written as JSON bytes straight from
the flow's objects and columns, byte for byte what `orjson.dumps` gives for the dicts
tcpfsm/render/records.py and tcpfsm/path/flows.py build (same key order, separators, float text and string
escaping).

Owns the JSON text of numbers and of times: integers, and seconds from integer nanoseconds as orjson
prints the double `records.sec` makes of them (`sec_text`; `int_text` for the tests), in the range
tests/test_emit.py proves equal; anything outside it goes to the caller's `slow` function (orjson on `sec`).
The digits of the last whole number of seconds written are kept (one module-level pair: times in a
capture share them), as text this module wrote. Reads a flow the way
records.flow_record does (the same attributes, the same keys in the same order; two shortcuts, each
falling back on the owner's function: an endpoint's `alt` when no transition has one, Connection.alt_of
otherwise; a flow's path row after the last one found, facts_of otherwise) and asks the caller for what
only other modules know (Zeek's conn_state, the path facts, the findings' records). Must not: decide a
record's content on its own (records.py and path/flows.py do, and tests/test_emit.py holds the bytes equal
to `orjson.dumps` of their dicts on every capture, one record at a time and as a whole document) or encode
strings itself (each distinct string is encoded once by orjson and cached).

Why the decimal µs text is orjson's: below 2**32 s (|ns| < 4e18) a whole number of µs `us` gives the
double nearest to the decimal us / 10**6 (records.sec), a decimal of at most 16 significant digits whose
spacing (1e-6) is more than twice the double's (at most 2**-21 there), so it is the one shortest decimal
that reads back as that double: the digits orjson prints. orjson writes 1e-5 <= |x| < 1e16 as a plain
decimal (".0" for a whole number) and smaller ones as `de-6` (1 to 9 µs).

Also puts the jsonl events of flows in records' order (`event_keys`: the sort keys, one tuple an event,
without a Python frame each).

Cython pure-Python mode, like tcpfsm/track/_runs.py: compiled by setup.py into tcpfsm.render._emit_c
(tcpfsm/_kernels.py picks which form runs); the plain module runs and gives the same bytes. Every integer
is a declared C type; the buffer is a reused bytearray, grown when a flow would not fit (written through
a pointer taken after each `_room`: growing replaces it), and a whole document's flows go through it in
pieces of about a megabyte (`Emitter.flows`), not one `bytes` a flow.
"""
from array import array

import cython
import orjson

if cython.compiled:
    from cython.cimports.libc.string import memcpy

i64 = cython.typedef(cython.longlong)

_SEC_LIMIT = cython.declare(i64, 4_000_000_000_000_000_000)   # |ns| below this: sec_text's proven range
_MAX_NUMBER = cython.declare(i64, 32)     # bytes a number or a time takes at most (orjson's included)
_MAX_TR = cython.declare(i64, 112)        # a transition's keys, separators and numbers, without its strings
_ROW = cython.declare(i64, 4)             # int64s per transition of Connection.transition_rows (fsm.TRANSITION_ROW)
ROW = 4                                   # the same, for records.FlowEncoder to check (a C global is no attribute)
TRANSITION, ANOMALY, FLOW_END = 0, 1, 2   # the order of records' events at one instant (records checks) ...
_TRANSITION = cython.declare(i64, 0)      # ... and as C constants
_ANOMALY = cython.declare(i64, 1)
_FLOW_END = cython.declare(i64, 2)
_CACHE_MAX = cython.declare(i64, 1 << 16) # distinct addresses / texts kept encoded (a stream's encoder lives long)

# "00" ... "99": two digits a lookup (a C string constant when compiled: no object to check at each use;
# tests/test_emit.py checks it is the pairs)
_PAIRS = cython.declare(cython.p_char)
_PAIRS = (b"00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748"
          b"49505152535455565758596061626364656667686970717273747576777879808182838485868788899091929394959697"
          b"9899")
_CLIENT = b'"client"'
_SERVER = b'"server"'


@cython.cfunc
@cython.inline                            # (two million calls a bench document: no call of its own)
@cython.exceptval(-1)
@cython.boundscheck(False)
@cython.wraparound(False)
@cython.locals(buf=cython.p_uchar, pos=i64, s=bytes, p=cython.p_uchar, n=i64)
def _put(buf, pos, s) -> i64:
    """Copy `s` into buf at pos; the new position."""
    p = s
    n = len(s)
    if cython.compiled:                     # (a byte at a time was a third of the emitter's time)
        memcpy(buf + pos, p, n)
    else:
        if pos + n > len(buf):              # (a slice would grow the bytearray: the C code would overrun it)
            raise IndexError("emitter buffer overrun")
        buf[pos:pos + n] = s
    return pos + n


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
@cython.locals(buf=cython.p_uchar, pos=i64, s=cython.p_char, n=i64)
def _lit(buf, pos, s) -> i64:
    """Copy a literal text (written in the call, without a NUL) into buf at pos; the new position. (A C
    string constant: its length and copy are the compiler's, not a bytes object's.)"""
    n = len(s)
    if cython.compiled:
        memcpy(buf + pos, s, n)
    else:
        if pos + n > len(buf):
            raise IndexError("emitter buffer overrun")
        buf[pos:pos + n] = s
    return pos + n


@cython.cfunc
@cython.exceptval(check=False)
@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)                   # (operands >= 0: C's division is Python's)
@cython.locals(buf=cython.p_uchar, end=i64, v=cython.ulonglong, q=cython.ulonglong, r=cython.ulonglong,
               tbl=cython.p_char)
def _put_pairs(buf, end, v) -> i64:
    """The decimal digits of v >= 0 written backwards so that the last one is at end - 1, two a step (a
    table of the pairs: half the divisions); returns where the first one is."""
    tbl = _PAIRS
    while v >= 100:
        q = v // 100
        r = (v - q * 100) * 2
        end -= 2
        buf[end] = tbl[r]
        buf[end + 1] = tbl[r + 1]
        v = q
    if v >= 10:
        end -= 2
        buf[end] = tbl[v * 2]
        buf[end + 1] = tbl[v * 2 + 1]
    else:
        end -= 1
        buf[end] = 48 + v
    return end


@cython.cfunc
@cython.exceptval(check=False)
@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)                   # (operands >= 0: C's division is Python's)
@cython.locals(buf=cython.p_uchar, pos=i64, v=i64, x=i64, d=i64)
def _put_int(buf, pos, v) -> i64:
    """An integer's decimal text (v > -2**63)."""
    if v < 0:
        buf[pos] = 45                       # '-'
        pos += 1
        v = -v
    if v < 100000:                          # its width: by comparisons below 10**8 (ports, counts, packet
        if v < 100:                         # numbers, most byte counts), else by divisions
            d = 1 if v < 10 else 2
        elif v < 10000:
            d = 3 if v < 1000 else 4
        else:
            d = 5
    elif v < 100000000:
        if v < 1000000:
            d = 6
        else:
            d = 7 if v < 10000000 else 8
    else:
        d = 9
        x = v // 100000000
        while x >= 100:                     # at most 5 steps
            x //= 100
            d += 2
        if x >= 10:
            d += 1
    _put_pairs(buf, pos + d, v)
    return pos + d


_whole_last = cython.declare(i64, -1)     # the last whole number of seconds >= 100 sec_text wrote ...
_whole_text = cython.declare(bytes, b"")  # ... and its digits (a capture's times share them: one copy, not
                                          # ten digits' divisions, a time)


@cython.cfunc
@cython.exceptval(-2)
@cython.boundscheck(False)
@cython.wraparound(False)
@cython.cdivision(True)                   # (operands >= 0: C's division is Python's)
@cython.locals(buf=cython.p_uchar, pos=i64, ns=i64, a=i64, us=i64, whole=i64, frac=i64, end=i64, hi=i64,
               mid=i64, lo=i64, tbl=cython.p_char)
def _put_sec(buf, pos, ns) -> i64:
    """orjson's text of records.sec(ns) at pos, the new position; -1 (nothing written) outside the proven
    range: not a whole number of µs, or |ns| >= 4e18."""
    global _whole_last, _whole_text
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
    frac = us - whole * 1000000
    if whole == 0 and 0 < frac < 10:        # below 1e-5: orjson's exponent form, "3e-6"
        buf[pos] = 48 + frac
        buf[pos + 1] = 101                  # 'e'
        buf[pos + 2] = 45
        buf[pos + 3] = 54                   # '6'
        return pos + 4
    if whole < 100:
        pos = _put_int(buf, pos, whole)
    else:
        if whole != _whole_last:            # (written, then kept: sec_text's tests cover _put_int's widths)
            end = _put_int(buf, pos, whole)
            _whole_text = bytes(buf[pos:end])
            _whole_last = whole
            pos = end
        else:
            pos = _put(buf, pos, _whole_text)
    buf[pos] = 46                           # '.'
    if frac == 0:
        buf[pos + 1] = 48
        return pos + 2
    tbl = _PAIRS                            # the six digits, two at a time, then the trailing zeros taken back
    hi = frac // 10000
    lo = frac - hi * 10000
    mid = lo // 100
    lo = lo - mid * 100
    buf[pos + 1] = tbl[2 * hi]
    buf[pos + 2] = tbl[2 * hi + 1]
    buf[pos + 3] = tbl[2 * mid]
    buf[pos + 4] = tbl[2 * mid + 1]
    buf[pos + 5] = tbl[2 * lo]
    buf[pos + 6] = tbl[2 * lo + 1]
    end = pos + 7
    while buf[end - 1] == 48:               # at most 5 steps: frac > 0
        end -= 1
    return end


@cython.locals(p=cython.p_uchar, v=i64)
def int_text(v) -> bytes:
    """The decimal text the emitter writes for an integer (-2**63 < v < 2**63), for the tests to hold to
    orjson's at every width."""
    buf = bytearray(_MAX_NUMBER)
    p = buf
    end: i64 = _put_int(p, 0, v)
    return bytes(buf[:end])


@cython.locals(p=cython.p_uchar)
def sec_text(ns: int) -> bytes | None:
    """orjson's text of records.sec(ns), or None outside the range this module proves (see the module doc)."""
    buf = bytearray(_MAX_NUMBER)
    p = buf
    end: i64 = _put_sec(p, 0, ns) if -_SEC_LIMIT < ns < _SEC_LIMIT else -1
    return None if end < 0 else bytes(buf[:end])


@cython.locals(seq=i64)
def event_keys(flows, keys: list, seq) -> int:
    """records' jsonl order for each flow of `flows`: append (ts, order, seq, flow, item) for each of its
    transitions, each of its anomalies, then its end (ts: its last packet; item None), `seq` counting on so
    that equal times keep this order and sorting the tuples never compares the objects. Returns the next
    seq. (Here, not in records.py: a Python frame per event was most of the jsonl document's time.)"""
    for f in flows:
        for t in f.transitions:
            keys.append((t.ts, _TRANSITION, seq, f, t))
            seq += 1
        for a in f.anomalies:
            keys.append((a.ts, _ANOMALY, seq, f, a))
            seq += 1
        keys.append((f.last_ts, _FLOW_END, seq, f, None))
        seq += 1
    return seq


@cython.final
@cython.cclass
class Emitter:
    """Writes one rendering's flow records into a reused buffer: `record(f)` one flow's bytes, `flows` a run
    of them handed out in large pieces, `events` the jsonl lines of a whole analysis the same way. It reads
    the flow itself (tcpfsm.track.flowtable.Flow and its tcpfsm.fsm Connection, by their public
    attributes), so a record costs no Python bytecode of ours beyond the caller's functions it is given,
    each asked only for what it alone knows:

    `states`: tcpfsm.fsm.State in order, and `state_text` the JSON text of each name; `slow(ns)`: the JSON
    text of a time outside sec_text's range (orjson on records.sec); `ip_text(flow, client)`: the JSON text
    of the flow's client (or server) address, asked once per distinct address; `conn_state(flow)`: Zeek's
    conn_state when the flow has no Zeek view of its own (tcpfsm.detect.zeek); `facts_of(flow)`:
    (PathFacts, row) or None (tcpfsm.path.flows); `encode(obj)`: orjson's text of a flow's ICMP list;
    `connection(flow)`: the text of the keys naming the flow in each of its jsonl events.
    `causes` is the dict Connection.transition_rows interns the causes into; each cause, address, history,
    conn_state and finding kind is encoded once."""

    _buf = cython.declare(bytearray)
    _pos = cython.declare(i64)
    _state_objs = cython.declare(list)
    _states = cython.declare(list)
    _max_state = cython.declare(i64)
    _cause_text = cython.declare(list)
    _max_cause = cython.declare(i64)
    _pre = cython.declare(list)                       # a transition's text before its packet number, made once
    _post = cython.declare(list)                      # ... and after it (None: not made yet)
    causes = cython.declare(dict, visibility="readonly")
    _rows_arr = cython.declare(object)                # Connection.transition_rows' columns, reused
    _rows = cython.declare(cython.longlong[::1])
    _ip = cython.declare(dict)                        # raw address -> its JSON text
    _text = cython.declare(dict)                      # history / conn_state -> its JSON text
    _pf = cython.declare(object)                      # the PathFacts whose json_columns are below (kept alive
                                                      # by the encoder until the next one: one at a time)
    _pf_flows = cython.declare(list)                  # its flows (row i = flows[i]), [] when not a list
    _pf_rows = cython.declare(i64)                    # rows of its json_columns
    _row = cython.declare(i64)                        # the row of the last flow found there
    _m = cython.declare(cython.longlong[:, ::1])
    _med = cython.declare(object)
    _p95 = cython.declare(object)
    _jit = cython.declare(object)
    _icmp = cython.declare(object)                    # the last IcmpFacts seen, and whether it holds any error
    _icmp_any = cython.declare(cython.bint)
    _slow = cython.declare(object)
    _ip_text = cython.declare(object)
    _conn_state = cython.declare(object)
    _facts_of = cython.declare(object)
    _encode = cython.declare(object)
    _connection = cython.declare(object)
    _conn = cython.declare(dict)                      # flow id -> its connection keys' text (jsonl events)

    def __init__(self, states, state_text, slow, ip_text=None, conn_state=None, facts_of=None, encode=None,
                 connection=None):
        self._buf = bytearray(1 << 16)
        self._pos = 0
        self._state_objs = list(states)
        self._states = list(state_text)
        self._max_state = max([len(s) for s in self._states])
        self._cause_text = []
        self._max_cause = 0
        self._pre = [b',"endpoint":' + (_SERVER if server else _CLIENT) + b',"from":' + old + b',"to":' + new
                     + b',"packet":' for server in (0, 1) for old in self._states for new in self._states]
        self._post = []
        self.causes = {}
        self._rows_arr = array("q", bytes(8 * _ROW * 256))
        self._rows = self._rows_arr
        self._ip = {}
        self._text = {}
        self._pf = None
        self._pf_flows = []
        self._pf_rows = 0
        self._row = -1
        self._med = self._p95 = self._jit = None
        self._icmp = None
        self._icmp_any = False
        self._slow = slow
        self._ip_text = ip_text
        self._conn_state = conn_state
        self._facts_of = facts_of
        self._encode = encode
        self._connection = connection
        self._conn = {}

    # -- the buffer ------------------------------------------------------------------------------
    @cython.cfunc
    @cython.locals(more=i64, need=i64)
    def _room(self, more) -> cython.void:
        """Room for `more` bytes after what is written (kept when the buffer grows): `_buf` is then the
        new buffer, and a pointer into the old one must be taken again."""
        need = self._pos + more
        if len(self._buf) < need:
            grown = bytearray(2 * need)
            grown[:self._pos] = self._buf[:self._pos]
            self._buf = grown

    @cython.cfunc
    def _hand(self, write) -> cython.void:
        """What the buffer holds, handed to `write` (a view of the reused buffer), and the buffer emptied."""
        if self._pos:
            write(memoryview(self._buf)[:self._pos])
            self._pos = 0

    @cython.cfunc
    @cython.locals(buf=cython.p_uchar)
    def _raw(self, text: bytes) -> cython.void:
        """Append JSON text as it is."""
        self._room(len(text))
        buf = self._buf
        self._pos = _put(buf, self._pos, text)

    def _take(self) -> bytes:
        """What is written, as bytes; the buffer is reused by what comes next."""
        out = bytes(memoryview(self._buf)[:self._pos])
        self._pos = 0
        return out

    # -- numbers, states and strings -------------------------------------------------------------
    @cython.cfunc
    @cython.inline
    @cython.exceptval(-1)
    @cython.locals(buf=cython.p_uchar, pos=i64, ns=i64, end=i64)
    def _time(self, buf, pos, ns) -> i64:
        end = _put_sec(buf, pos, ns)
        if end >= 0:
            return end
        return _put(buf, pos, self._slow(ns))

    @cython.cfunc
    @cython.exceptval(-1)
    @cython.locals(buf=cython.p_uchar, pos=i64, ns=i64)
    def _opt_time(self, buf, pos, ns) -> i64:
        """A time, or null where it is unknown (negative)."""
        return _lit(buf, pos, b"null") if ns < 0 else self._time(buf, pos, ns)

    @cython.cfunc
    @cython.exceptval(-1)
    @cython.locals(buf=cython.p_uchar, pos=i64, v=i64)
    def _opt_int(self, buf, pos, v) -> i64:
        """An integer, or null where it is unknown (negative)."""
        return _lit(buf, pos, b"null") if v < 0 else _put_int(buf, pos, v)

    @cython.cfunc
    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(i=i64)
    def _state(self, state) -> i64:
        """A state's position in State (by identity: Enum.__hash__ is Python code); -1 for None."""
        if state is None:
            return -1
        for i in range(len(self._state_objs)):
            if self._state_objs[i] is state:
                return i
        raise ValueError(f"not a State: {state!r}")

    @cython.cfunc
    def _ip_of(self, f, raw, client: cython.bint) -> bytes:
        got = self._ip.get(raw)
        if got is None:
            if len(self._ip) >= _CACHE_MAX:               # (a stream's encoder lives long)
                self._ip.clear()
            got = self._ip_text(f, client)
            self._ip[raw] = got
        return got

    @cython.cfunc
    def _text_of(self, text) -> bytes:
        got = self._text.get(text)
        if got is None:
            if len(self._text) >= _CACHE_MAX:
                self._text.clear()
            got = bytes(memoryview(orjson.dumps(text)))   # (its own size: orjson's bytes hold ~4 KB each)
            self._text[text] = got
        return got

    # -- a flow record ---------------------------------------------------------------------------
    def record(self, f) -> bytes:
        """encode(records.flow_record(f)). Leaves nothing in the buffer."""
        self._pos = 0
        self._flow(f, True)
        return self._take()

    @cython.locals(chunk=i64)
    def flows(self, flows, write, first: bytes, sep: bytes, chunk) -> None:
        """The records of `flows` one after another, `first` before the first and `sep` before each of the
        others, handed to `write` in pieces of about `chunk` bytes, each ending at a record's end. A piece is
        a view of the reused buffer: `write` copies or writes it out and does not keep it."""
        self._pos = 0
        lead = first
        for f in flows:
            self._raw(lead)
            lead = sep
            self._flow(f, True)
            if self._pos >= chunk:
                self._hand(write)
        self._hand(write)

    @cython.cfunc
    @cython.locals(n=i64, row=i64, buf=cython.p_uchar, brace=cython.bint, client_alt=i64, server_alt=i64)
    def _flow(self, f, brace) -> cython.void:
        """Append f's record: records.flow_record's keys and values, read from the flow as it reads them
        (without its opening brace unless `brace`: the flow_end event's keys come before them)."""
        conn = f.conn
        c = conn.client
        s = conn.server
        z = f.zeek                                        # Zeek's own view, when its tracker ran
        if z:
            cstate = z[0]
            history = z[1]
        else:
            cstate = self._conn_state(f)
            history = conn.history
        n = len(conn.transitions)
        if n * _ROW > len(self._rows_arr):
            self._rows_arr = array("q", bytes(16 * _ROW * n))
            self._rows = self._rows_arr
        conn.transition_rows(self._rows_arr, self.causes)
        # Connection.alt_of(ep) is ep.alt or one of the transitions' alternatives: with none among the
        # transitions (nearly every flow) it is ep.alt, read without scanning them twice more
        if self._any_alt(n):
            client_alt = self._state(conn.alt_of(c))
            server_alt = self._state(conn.alt_of(s))
        else:
            client_alt = self._state(c.alt)
            server_alt = self._state(s.alt)
        self._head(brace, f.id, self._ip_of(f, f.client_raw, True), f.client_port,
                   self._ip_of(f, f.server_raw, False), f.server_port, f.role_inferred, f.first_ts, f.last_ts,
                   c.packets, s.packets, c.payload, s.payload, self._state(c.state), self._state(s.state),
                   client_alt, server_alt, self._text_of(cstate), self._text_of(history))
        self._transitions(n)
        self._findings(f.anomalies)
        row = self._path_row(f)
        if row >= 0:
            icmp = self._pf.icmp
            if icmp is not self._icmp:                    # (its errors are fixed when it is made)
                self._icmp_any = icmp is not None and len(icmp) > 0
                self._icmp = icmp
            found = icmp.of_flow(row) if self._icmp_any else None
            self._path(row, self._encode(found) if found else b"[]")
        self._room(1)
        buf = self._buf
        buf[self._pos] = 125                              # '}'
        self._pos += 1

    @cython.cfunc
    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(rows=cython.longlong[::1], n=i64, i=i64)
    def _any_alt(self, n) -> cython.bint:
        """Whether any of the n transitions in `_rows` has an alternative state."""
        rows = self._rows
        for i in range(n):
            if (rows[i * _ROW + 3] >> 16) & 0xFF:
                return True
        return False

    @cython.cfunc
    @cython.locals(row=i64)
    def _path_row(self, f) -> i64:
        """f's row in the PathFacts `_pf` (made current, its json_columns read), -1 when no path analysis ran
        for it. Flows are rendered in the order of the PathFacts' own (row i = flows[i]), so the row after
        the last one found is tried first, by identity, before asking `facts_of`."""
        row = self._row + 1
        if self._pf is not None and row < self._pf_rows and row < len(self._pf_flows) and self._pf_flows[row] is f:
            self._row = row
            return row
        got = self._facts_of(f)
        if got is None:
            return -1
        pf = got[0]
        row = got[1]
        if pf is not self._pf:                            # (its json_columns are computed once, kept by it)
            cols = pf.json_columns()
            self._m = cols[0]
            self._med = cols[1]
            self._p95 = cols[2]
            self._jit = cols[3]
            self._pf = pf
            fl = pf.flows
            self._pf_flows = fl if type(fl) is list else []
            self._pf_rows = self._m.shape[0]
        self._row = row
        return row

    @cython.cfunc
    @cython.locals(buf=cython.p_uchar, pos=i64, first=cython.bint)
    def _findings(self, found) -> cython.void:
        """Append ',"anomalies":' and the list of records.flow_anomaly_record(a) for a in `found` (each
        kind, severity and endpoint encoded once; the messages, mostly distinct, each time)."""
        if not found:
            self._raw(b',"anomalies":[]')
            return
        self._raw(b',"anomalies":[')
        first = True
        for a in found:
            kind = self._text_of(a.kind)
            severity = self._text_of(a.severity)
            endpoint = self._text_of(a.endpoint)
            message = orjson.dumps(a.message)
            ts = a.ts
            self._room(80 + len(kind) + len(severity) + len(endpoint) + len(message) + _MAX_NUMBER)
            buf = self._buf
            pos = self._pos
            if not first:
                buf[pos] = 44                             # ','
                pos += 1
            first = False
            pos = _lit(buf, pos, b'{"kind":')
            pos = _put(buf, pos, kind)
            pos = _lit(buf, pos, b',"severity":')
            pos = _put(buf, pos, severity)
            pos = _lit(buf, pos, b',"ts":')
            pos = _lit(buf, pos, b"null") if ts is None else self._time(buf, pos, ts)
            pos = _lit(buf, pos, b',"endpoint":')
            pos = _put(buf, pos, endpoint)
            pos = _lit(buf, pos, b',"message":')
            pos = _put(buf, pos, message)
            buf[pos] = 125                                # '}'
            self._pos = pos + 1
        self._raw(b"]")

    @cython.cfunc
    @cython.locals(buf=cython.p_uchar, pos=i64, brace=cython.bint, flow_id=i64, client_port=i64, server_port=i64,
                   role_inferred=cython.bint, first_ns=i64, last_ns=i64, client_packets=i64,
                   server_packets=i64, client_bytes=i64, server_bytes=i64, client_state=i64, server_state=i64,
                   client_alt=i64, server_alt=i64)
    def _head(self, brace, flow_id, client_ip: bytes, client_port, server_ip: bytes, server_port, role_inferred,
              first_ns, last_ns, client_packets, server_packets, client_bytes, server_bytes, client_state,
              server_state, client_alt, server_alt, conn_state: bytes, history: bytes) -> cython.void:
        """A flow record's keys before "transitions" (addresses, conn_state and history as their JSON
        text, states by position, -1 for no alternative)."""
        self._room(512 + len(client_ip) + len(server_ip) + len(conn_state) + len(history) + 4 * self._max_state)
        buf = self._buf
        pos = _lit(buf, self._pos, b'{"id":') if brace else _lit(buf, self._pos, b'"id":')
        pos = _put_int(buf, pos, flow_id)
        pos = _lit(buf, pos, b',"client":{"ip":')
        pos = _put(buf, pos, client_ip)
        pos = _lit(buf, pos, b',"port":')
        pos = _put_int(buf, pos, client_port)
        pos = _lit(buf, pos, b'},"server":{"ip":')
        pos = _put(buf, pos, server_ip)
        pos = _lit(buf, pos, b',"port":')
        pos = _put_int(buf, pos, server_port)
        pos = _lit(buf, pos, b'},"role_inferred":')
        pos = _lit(buf, pos, b"true") if role_inferred else _lit(buf, pos, b"false")
        pos = _lit(buf, pos, b',"first_ts":')
        pos = self._time(buf, pos, first_ns)
        pos = _lit(buf, pos, b',"last_ts":')
        pos = self._time(buf, pos, last_ns)
        pos = _lit(buf, pos, b',"packets":{"client":')
        pos = _put_int(buf, pos, client_packets)
        pos = _lit(buf, pos, b',"server":')
        pos = _put_int(buf, pos, server_packets)
        pos = _lit(buf, pos, b'},"bytes":{"client":')
        pos = _put_int(buf, pos, client_bytes)
        pos = _lit(buf, pos, b',"server":')
        pos = _put_int(buf, pos, server_bytes)
        pos = _lit(buf, pos, b'},"states":{"client":')
        pos = _put(buf, pos, self._states[client_state])
        pos = _lit(buf, pos, b',"server":')
        pos = _put(buf, pos, self._states[server_state])
        if client_alt >= 0 or server_alt >= 0:
            pos = _lit(buf, pos, b',"alt":{')
            if client_alt >= 0:
                pos = _lit(buf, pos, b'"client":')
                pos = _put(buf, pos, self._states[client_alt])
                if server_alt >= 0:
                    buf[pos] = 44                         # ','
                    pos += 1
            if server_alt >= 0:
                pos = _lit(buf, pos, b'"server":')
                pos = _put(buf, pos, self._states[server_alt])
            buf[pos] = 125                                # '}'
            pos += 1
        pos = _lit(buf, pos, b'},"conn_state":')
        pos = _put(buf, pos, conn_state)
        pos = _lit(buf, pos, b',"history":')
        pos = _put(buf, pos, history)
        self._pos = pos

    @cython.cfunc
    @cython.locals(k=i64)
    def _new_causes(self) -> cython.void:
        """Encode the causes interned since the last call (Connection.transition_rows adds them to `causes`)
        and make room for their texts after the packet number."""
        k = 2 * (len(self._states) + 1)
        for c in list(self.causes)[len(self._cause_text):]:
            t = bytes(memoryview(orjson.dumps(c)))       # (its own size: orjson's bytes hold ~4 KB each)
            self._cause_text.append(t)
            self._max_cause = max(self._max_cause, len(t))
            self._post.extend([None] * k)

    @cython.cfunc
    @cython.inline
    @cython.exceptval(-1)
    @cython.boundscheck(False)                            # (the indices are in range by construction)
    @cython.wraparound(False)
    @cython.locals(buf=cython.p_uchar, pos=i64, server=i64, old=i64, new=i64, packet=i64, cause=i64, alt=i64,
                   retracted=i64, ns=i64, k=i64)
    def _transition_fields(self, buf, pos, server, old, new, packet, cause, alt, retracted) -> i64:
        """A transition record's keys after "ts" and its closing brace (records.transition_record's): the text
        before the packet number by (endpoint, from, to), the text after it by (cause: its id in `causes`, alt,
        retracted), each made once."""
        ns = len(self._states)
        pos = _put(buf, pos, self._pre[(server * ns + old) * ns + new])
        pos = _lit(buf, pos, b"null") if packet < 0 else _put_int(buf, pos, packet)
        k = (cause * (ns + 1) + alt + 1) * 2 + retracted
        post = self._post[k]
        if post is None:
            post = b',"cause":' + self._cause_text[cause]
            if alt >= 0:
                post += b',"alt":' + self._states[alt]
            if retracted:
                post += b',"retracted":true'
            post += b"}"
            self._post[k] = post
        return _put(buf, pos, post)

    # -- jsonl events ----------------------------------------------------------------------------
    @cython.locals(chunk=i64, order=i64)
    def events(self, keys, write, other, chunk) -> None:
        """The jsonl lines of `keys`, records._event_keys' sorted (time, order, seq, flow, item) tuples,
        handed to `write` in pieces of about `chunk` bytes (views of the reused buffer, each ending at a
        line's end): transitions and flow_end events as records.transition_event and flow_end_event print,
        written here; any other (a flow's anomaly, an aggregate one) the line `other(flow, item)` gives."""
        self._pos = 0
        for key in keys:
            order = key[1]
            f = key[3]
            if f is None or (order != _TRANSITION and order != _FLOW_END):
                self._raw(other(f, key[4]))
            elif order == _TRANSITION:
                self._transition_event(f, key[4])
            else:
                self._flow_end(f)
                self._raw(b"\n")
            if self._pos >= chunk:
                self._hand(write)
        self._hand(write)

    def transition_event(self, f, t) -> bytes:
        """encode(records.transition_event(f, t)) and its newline. Leaves a record being written alone."""
        start: i64 = self._pos
        self._transition_event(f, t)
        out = bytes(memoryview(self._buf)[start:self._pos])
        self._pos = start
        return out

    def flow_end(self, f) -> bytes:
        """encode(records.flow_end_event(f)). Leaves nothing in the buffer."""
        self._pos = 0
        self._flow_end(f)
        return self._take()

    @cython.cfunc
    @cython.locals(buf=cython.p_uchar, pos=i64)
    def _flow_end(self, f) -> cython.void:
        """Append the flow_end event: its own keys (records._flow_end_head's), then the flow record's."""
        self._room(64 + 2 * _MAX_NUMBER)
        buf = self._buf
        pos = _lit(buf, self._pos, b'{"event":"flow_end","ts":')
        pos = self._time(buf, pos, f.last_ts)
        pos = _lit(buf, pos, b',"flow":')
        pos = _put_int(buf, pos, f.id)
        buf[pos] = 44                                     # ','
        self._pos = pos + 1
        self._flow(f, False)

    @cython.cfunc
    @cython.locals(buf=cython.p_uchar, pos=i64, cid=i64, packet=i64)
    def _transition_event(self, f, t) -> cython.void:
        """Append one jsonl transition event and its newline (records.transition_event's keys): the
        connection's keys (records.connection's) encoded once per flow by `connection(f)`."""
        connection = self._conn.get(f.id)
        if connection is None:
            if len(self._conn) >= _CACHE_MAX:
                self._conn.clear()
            connection = self._connection(f)
            self._conn[f.id] = connection
        cause = t.cause
        got = self.causes.get(cause)
        if got is None:
            cid = len(self.causes)
            self.causes[cause] = cid
        else:
            cid = got
        if len(self._cause_text) < len(self.causes):
            self._new_causes()
        p = t.packet
        packet = -1 if p is None else p
        self._room(256 + len(connection) + self._max_cause + 3 * self._max_state)
        buf = self._buf
        pos = _lit(buf, self._pos, b'{"event":"transition","ts":')
        pos = self._time(buf, pos, t.ts)
        buf[pos] = 44                                     # ','
        pos = _put(buf, pos + 1, connection)
        pos = self._transition_fields(buf, pos, t.endpoint == "server", self._state(t.old), self._state(t.new),
                                      packet, cid, self._state(t.alt), t.retracted)
        buf[pos] = 10                                     # '\n'
        self._pos = pos + 1

    @cython.cfunc
    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(rows=cython.longlong[::1], n=i64, i=i64, r=i64, pos=i64, bits=i64, buf=cython.p_uchar)
    def _transitions(self, n) -> cython.void:
        """Append ',"transitions":' and the JSON list of the n transitions in `_rows`
        (Connection.transition_rows' columns), as orjson.dumps([records.transition_record(t) ...]) prints it."""
        if len(self._cause_text) < len(self.causes):      # causes first seen by this flow
            self._new_causes()
        self._room(32 + n * (_MAX_TR + self._max_cause + 3 * self._max_state))
        buf = self._buf
        rows = self._rows
        pos = _lit(buf, self._pos, b',"transitions":[')
        for i in range(n):
            r = i * _ROW
            bits = rows[r + 3]
            pos = _lit(buf, pos, b',{"ts":') if i else _lit(buf, pos, b'{"ts":')
            pos = self._time(buf, pos, rows[r])
            pos = self._transition_fields(buf, pos, (bits >> 24) & 1, bits & 0xFF, (bits >> 8) & 0xFF,
                                          rows[r + 1], rows[r + 2], ((bits >> 16) & 0xFF) - 1, (bits >> 25) & 1)
        buf[pos] = 93                                     # ']'
        self._pos = pos + 1

    @cython.cfunc
    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(m=cython.longlong[:, ::1], row=i64, pos=i64, buf=cython.p_uchar, n=i64, v=i64)
    def _path(self, row, icmp: bytes) -> cython.void:
        """Append ',"path":' and the JSON of PathFacts.record(row) from the PathFacts' json_columns (`_m`: its
        matrix, columns in path/flows.JSON_COLUMNS order; `_med`, `_p95`, `_jit`: the rows' texts) and
        `icmp`, the JSON of the record's ICMP list."""
        median = self._med[row]
        p95 = self._p95[row]
        jitter = self._jit[row]
        self._room(1024 + len(median) + len(p95) + len(jitter) + len(icmp))
        buf = self._buf
        m = self._m
        pos = _lit(buf, self._pos, b',"path":{"handshake_rtt":')
        pos = self._opt_time(buf, pos, m[row, 0])
        pos = _lit(buf, pos, b',"handshake_legs":{"syn_to_synack":')
        pos = self._opt_time(buf, pos, m[row, 1])
        pos = _lit(buf, pos, b',"synack_to_ack":')
        pos = self._opt_time(buf, pos, m[row, 2])
        n = m[row, 3]
        if n:
            pos = _lit(buf, pos, b'},"rtt":{"min":')
            pos = self._opt_time(buf, pos, m[row, 4])
            pos = _lit(buf, pos, b',"median":')
            pos = _put(buf, pos, median)
            pos = _lit(buf, pos, b',"p95":')
            pos = _put(buf, pos, p95)
            pos = _lit(buf, pos, b',"max":')
            pos = self._opt_time(buf, pos, m[row, 5])
            pos = _lit(buf, pos, b',"jitter":')
            pos = _put(buf, pos, jitter)
            pos = _lit(buf, pos, b',"samples":')
            pos = _put_int(buf, pos, n)
        else:
            pos = _lit(buf, pos, b'},"rtt":{"min":null,"median":null,"p95":null,"max":null,"jitter":null,'
                                 b'"samples":0')
        pos = _lit(buf, pos, b'},"retransmissions":{"client":{"segments":')
        pos = _put_int(buf, pos, m[row, 6])
        pos = _lit(buf, pos, b',"bytes":')
        pos = _put_int(buf, pos, m[row, 7])
        pos = _lit(buf, pos, b'},"server":{"segments":')
        pos = _put_int(buf, pos, m[row, 8])
        pos = _lit(buf, pos, b',"bytes":')
        pos = _put_int(buf, pos, m[row, 9])
        pos = _lit(buf, pos, b'}},"zero_window":{"client":{"count":')
        pos = _put_int(buf, pos, m[row, 10])
        pos = _lit(buf, pos, b',"seconds":')
        pos = self._opt_time(buf, pos, m[row, 11])
        pos = _lit(buf, pos, b'},"server":{"count":')
        pos = _put_int(buf, pos, m[row, 12])
        pos = _lit(buf, pos, b',"seconds":')
        pos = self._opt_time(buf, pos, m[row, 13])
        pos = _lit(buf, pos, b'}},"options":{"mss":{"client":')
        v = m[row, 14]
        pos = _lit(buf, pos, b"null") if v == 0 else _put_int(buf, pos, v)      # `mss or None`
        pos = _lit(buf, pos, b',"server":')
        v = m[row, 15]
        pos = _lit(buf, pos, b"null") if v == 0 else _put_int(buf, pos, v)
        pos = _lit(buf, pos, b'},"window_scale":')
        if m[row, 16]:
            pos = _lit(buf, pos, b'{"client":')
            pos = _put_int(buf, pos, m[row, 17])
            pos = _lit(buf, pos, b',"server":')
            pos = _put_int(buf, pos, m[row, 18])
            pos = _lit(buf, pos, b'}')
        else:
            pos = _lit(buf, pos, b"null")
        pos = _lit(buf, pos, b',"sack":')
        pos = _lit(buf, pos, b"true") if m[row, 19] else _lit(buf, pos, b"false")
        pos = _lit(buf, pos, b',"timestamps":')
        pos = _lit(buf, pos, b"true") if m[row, 20] else _lit(buf, pos, b"false")
        pos = _lit(buf, pos, b'},"keepalives":{"client":')
        pos = _put_int(buf, pos, m[row, 21])
        pos = _lit(buf, pos, b',"server":')
        pos = _put_int(buf, pos, m[row, 22])
        pos = _lit(buf, pos, b'},"ttl":{"client":')
        pos = self._opt_int(buf, pos, m[row, 23])
        pos = _lit(buf, pos, b',"server":')
        pos = self._opt_int(buf, pos, m[row, 24])
        pos = _lit(buf, pos, b'},"hops":{"client":')
        pos = self._opt_int(buf, pos, m[row, 25])
        pos = _lit(buf, pos, b',"server":')
        pos = self._opt_int(buf, pos, m[row, 26])
        pos = _lit(buf, pos, b'},"icmp":')
        pos = _put(buf, pos, icmp)
        buf[pos] = 125                                    # '}'
        self._pos = pos + 1
