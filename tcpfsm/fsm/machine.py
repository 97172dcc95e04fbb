# cython: annotation_typing=False
"""One connection seen by a passive observer: two endpoint machines, the evidence rules, the counters, and the
observer model (`Observer`).

Everything that moves an endpoint lives here and in `table`; `track` only feeds segments and time. The loops
that drive many connections' machines live here too, because from here their calls into a connection are C
calls: the walk over a batch's segments (`walk_groups`, over the table `gather_rows` makes), the table's
timers (`TimerHeap`, `fire_timers`) and the settling at the end (`settle_all`); and what other stages read off
many connections at once (`end_states` for a summary, `transition_columns` for the state piles). Which
connection a segment belongs to stays track's call (`decide`).

Theory of operation
-------------------
A connection has two `Endpoint`s, the client (the SYN sender, or the inferred one) and the server, and
an `Observer` (below: the observer model) that knows how far the capture point is from each. Each segment seen on the
wire is sent by one endpoint (X) and addressed to the other (Y). `Connection.feed` does three things,
always in this order:

1. **Count** (`_count`): packets, bytes, retransmissions, the highest sequence and acknowledgement
   numbers, windows and Zeek's history letters. The one place counters change (`feed_plain` and
   `feed_plain_rows` use it too, for the segments that cannot change a state).
2. **Classify** (`_classify`): a pure step that turns the segment, read against the bookkeeping as it
   stood before it, into endpoint events, in this fixed order:
   a. X's acknowledgement field says what X has received: an ACK covering Y's SYN is `RCV_SYNACK` for
      X, covering Y's FIN is `RCV_FIN` for X. A FIN therefore moves its receiver when the receiver's
      ACK of it is seen; the move is stamped when the FIN *arrived* (observer model), not when the ACK
      was seen. A FIN whose ACK is never seen is settled later (rule 4).
   b. What X sent: `SND_SYN`, `SND_SYNACK`, `SND_FIN` (certain: we saw it), stamped when it left X.
   c. What Y learns from X's acknowledgement: `RCV_ACK_OF_SYN`, `RCV_ACK_OF_FIN`, stamped when the ACK
      reached Y. ACKs seen are assumed delivered, unless Y later retransmits what was acknowledged *and*
      that retransmission left Y after the ACK reached it: then the table's correcting entry moves Y
      back, and the pair is marked `retracted` (netstat shows the state Y really held). A
      retransmission that was already in flight when the ACK arrived proves nothing. Each later ACK
      is judged the same way; once one was proven lost, the last one carries `alt` (arrived, or the
      sender gave up retrying: the wire looks the same).
   d. Inference: when X acknowledges Y's data beyond Y's SYN, Y must have completed its handshake
      (`INFER_SYNCED`), and so must X if it was still waiting for Y's handshake ACK. This is what lets a
      one-sided capture (only one direction visible) reach ESTABLISHED.
   A RST is checked for plausibility (in Y's receive window, or answering Y's SYN): a plausible one is
   `SND_RST` for X and `RCV_RST` for Y; any other is an `out_of_window_rst` and changes nothing.
3. **Look up** (`_move`): every event goes through `table.TABLE`; nothing moves an endpoint otherwise.
   An event with no entry is an `invalid_transition` and leaves the state alone.

4. **What cannot be known** is said, not guessed silently. A FIN whose receiver never acknowledges it
   in the capture is settled when the capture ends (`settle`): if the receiver sent anything after the
   FIN reached it without acknowledging it, it certainly did not get it. Otherwise the packets cannot
   decide; the likelier state is kept and the other is recorded as `alt` (on the transition, or on the
   endpoint's state from the FIN's arrival on): *delivered* when the capture ended before an ACK could
   have come back, or when the receiver's packets never reach the tap at all (one-sided capture) and
   the sender did not retransmit; *not delivered* when the receiver's packets do reach the tap and no
   ACK came, or the sender kept retransmitting. A SYN+ACK its client never answered before the capture
   ended is treated alike. An ACK seen on its way is assumed to arrive unless a retransmission proves
   otherwise (rule c): a final ACK that is the capture's last packet is not marked, since nothing
   suggests it was lost.

5. **A FIN that may have left earlier than its first copy seen** (`alt_before` on the SND_FIN move:
   from that time on the endpoint may already have held its closing state). Two ways a close stays off
   the wire:
   - *Lost before the tap.* Linux numbers a connected socket's packets from one IP Identification
     counter, one step a packet. When every step between X's packets seen so far was one (a
     per-connection counter, nothing missed), and X's first FIN seen is more than one step past X's
     previous packet and starts where X's data ended (the packets in between carried no new data), those
     unseen packets may have been earlier copies of that FIN: X may have closed any time after its
     previous packet left. (A host-wide counter, or an earlier gap, shows other steps: no conclusion.)

6. **A peer never seen** (one-sided capture) may have reset the connection after the seen endpoint's last
   packet: neither its RST nor anything after it would show. A connection open when the capture ends is
   given `alt` CLOSED from that packet on, for both endpoints (`settle`).
   - *Queued behind data.* A FIN leaves only after all queued data. When it rides on data sent after the
     peer's zero-window stall ended (X's data not paused again since), close() may have come any time
     after X learned of the stall: the data, and the FIN behind it, waited for the window.

Timers come from a `TimerProfile` through `table.TIMEOUTS`; the caller advances time with
`expire(now)` and ends with `settle(end)`. Nothing here does I/O or reads a clock. Times are integer
nanoseconds: `ts` is always the observer's time, `at` the endpoint's (the observer model, below).

The observer model (`Observer`)
-------------------------------
A packet is seen at the tap at time t. It left its sender at t - d(sender) and reaches its receiver at
t + d(receiver), where d(x) is the one-way delay between the tap and endpoint x. Endpoint states change
when something happens *at the endpoint*, so every transition is stamped twice: `ts`, the observer's
time of the packet (or timer) that caused it, and `at`, when the endpoint changed state by this model:

- what an endpoint did (sent a SYN, a FIN, a RST) happened at `departure(t)`: one tap->sender delay
  before the tap saw it;
- what an endpoint received happened at `arrival(t)`: one tap->receiver delay after the tap saw it,
  unless later evidence says the segment was lost after the tap.

Later evidence can only count if it was *sent after* the segment arrived: a retransmission seen at u
left its sender at u - d(sender); if that is before the acknowledgement it seems to contradict reached
that sender, the retransmission was already in flight and proves nothing (`sent_after`). This is the
rule that long delays break when it is ignored: a retransmitted FIN crossing the final ACK on a 150 ms
path is not evidence that the ACK was lost.

The delays come from the handshake, the one exchange in which both endpoints answer at once (the kernel
sends SYN+ACK and the handshake ACK without waiting for an application):

    SYN seen at t1, SYN+ACK at t2, handshake ACK at t3:
    t2 - t1 = 2 d(server)        t3 - t2 = 2 d(client)

A tap next to the client sees a short second gap and a long first one; next to the server, the reverse;
in the middle, both are about half the round trip. `--capture-point client|server|middle` overrides the
split (the round trip is still measured); without a handshake the delays are zero, which is right for a
capture taken on one of the two hosts, the usual case. `place()` names where the tap seems to stand.
Times are integer nanoseconds.

Compiled form
-------------
This module is a Cython pure-Python-mode kernel (tcpfsm/_kernels.py): setup.py compiles it into
tcpfsm.fsm.machine_c, and the plain `.py` runs as the readable reference
(TCPFSM_PURE=1; tests/test_compiled_machine.py holds the two equal). `Endpoint`, `Connection` and
`Observer` are extension types whose never-None integers are C `long long` fields (`i64`); values that
may be None stay objects. Annotations are documentation only (`annotation_typing=False`): C types come
from `cython.declare` and `@cython.locals`, so a numpy integer or a subclass is never refused. Helpers
called only from here are C functions (`@cython.cfunc`), which is why they use no closures or
generators. Import the classes from `tcpfsm.fsm`, which picks the form, never from this module.
"""
from __future__ import annotations

from dataclasses import dataclass
from weakref import ref as _weakref

import cython
import numpy as np

i64 = cython.typedef(cython.longlong)     # every integer that is never None: a C long long

from .profiles import TimerProfile
from .states import Event, State
from .table import TABLE, TIMEOUTS, UNDOES, is_rfc_edge


FIN = cython.declare(i64, 0x01)
SYN = cython.declare(i64, 0x02)
RST = cython.declare(i64, 0x04)
ACK = cython.declare(i64, 0x10)
_M32 = cython.declare(i64, 0xFFFFFFFF)
_HALF = cython.declare(i64, 0x80000000)
NS = cython.declare(i64, 1_000_000_000)
# an ACK of a FIN comes back within a round trip and this (delayed ACK <= 500 ms)
_ACK_WAIT = cython.declare(i64, 500_000_000)
# a sender with no ACK retransmits within 3 round trips and this (RTO >= 200 ms)
_RTO_WAIT = cython.declare(i64, 600_000_000)
# a kept request's SYN+ACK is retransmitted within this (Linux: 1 s, BSD: 3 s)
_SYNACK_WAIT = cython.declare(i64, 1_500_000_000)
# the states a RST from the peer ends (CLOSED); not TIME_WAIT (a peer has nothing left to reset there)
_RESETTABLE = frozenset({State.SYN_RECEIVED, State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2,
                         State.CLOSE_WAIT, State.CLOSING, State.LAST_ACK})
# a sender whose data stops this long and resumes has paused (not merely waited for ACKs)
_PAUSE = cython.declare(i64, 1_000_000_000)
# unseen packets between two of an endpoint's IP IDs that may be copies of its FIN: retries are bounded
# (Linux tcp_retries2 = 15)
_HIDDEN_MAX = cython.declare(i64, 32)
# States and events as module constants: an attribute of an Enum class costs a lookup through its
# metaclass on every use (about 0.2 us), a module constant is one dictionary read (compiled: cached).
_CLOSED = State.CLOSED
_CLOSE_WAIT = State.CLOSE_WAIT
_CLOSING = State.CLOSING
_FIN_WAIT_1 = State.FIN_WAIT_1
_FIN_WAIT_2 = State.FIN_WAIT_2
_LAST_ACK = State.LAST_ACK
_LISTEN = State.LISTEN
_SYN_RECEIVED = State.SYN_RECEIVED
_SYN_SENT = State.SYN_SENT
_TIME_WAIT = State.TIME_WAIT
_EST = State.ESTABLISHED
_COOKIE = Event.COOKIE
_INFER_SYN = Event.INFER_SYN
_INFER_SYNACK = Event.INFER_SYNACK
_INFER_SYNCED = Event.INFER_SYNCED
_MIDSTREAM = Event.MIDSTREAM
_RCV_ACK_OF_FIN = Event.RCV_ACK_OF_FIN
_RCV_ACK_OF_SYN = Event.RCV_ACK_OF_SYN
_RCV_FIN = Event.RCV_FIN
_RCV_RST = Event.RCV_RST
_RCV_SYNACK = Event.RCV_SYNACK
_REUSED = Event.REUSED
_SND_FIN = Event.SND_FIN
_SND_RST = Event.SND_RST
_SND_SYN = Event.SND_SYN
_SND_SYNACK = Event.SND_SYNACK
_TIMEOUT = Event.TIMEOUT
_RCV_ICMP_ERROR = Event.RCV_ICMP_ERROR
_SND_SYN_AFTER_ICMP = Event.SND_SYN_AFTER_ICMP



@cython.ccall
@cython.returns(cython.bint)
@cython.locals(a=i64, b=i64, d=i64)
def seq_gt(a, b):
    """a > b in 32-bit sequence space."""
    d = (a - b) & _M32
    return 0 < d < _HALF


@cython.ccall
@cython.returns(cython.bint)
@cython.locals(a=i64, b=i64)
def seq_ge(a, b):
    return ((a - b) & _M32) < _HALF


# Connection.transition_rows: the int64s per transition, and states by their position in `State`
_ROW = cython.declare(i64, 4)
TRANSITION_ROW = 4          # the same, for the renderer (a declared C global is not a module attribute)
_STATES = tuple(State)
_NSTATES = cython.declare(i64, len(_STATES))
# Transition.reason by number: the table's reasons (others are numbered when first given)
_REASONS: list = []
_REASON_ID: dict = {}


@cython.cfunc
@cython.returns(cython.schar)
@cython.locals(k=i64)
def _position(members: tuple, x, kind: str) -> int:
    """x's position in `members` (an Enum's members in order), by identity: not Enum.__hash__, a Python-level
    call."""
    for k in range(len(members)):
        if members[k] is x:
            return k
    raise ValueError(f"not {kind}: {x!r}")


@cython.cfunc
@cython.returns(cython.schar)
def _state_code(state) -> int:
    """A state's position in `State`."""
    return _position(_STATES, state, "a State")


@cython.cfunc
@cython.returns(cython.ushort)
def _reason_id(reason) -> int:
    got = _REASON_ID.get(reason)
    if got is not None:
        return got
    if not isinstance(reason, str) or len(_REASONS) >= 0xFFFF:
        raise ValueError(f"a transition's reason must be one of at most 65535 strings, not {reason!r}")
    _REASON_ID[reason] = len(_REASONS)
    _REASONS.append(reason)
    return len(_REASONS) - 1


for _entries in TABLE.values():           # (numbered in the table's order, before any transition)
    for _entry in _entries.values():
        _reason_id(_entry[1])

# The table as flat lookups by (state, event) position, read once per move (`_move`): no dict, tuple or
# hash per transition. `_CELL_NEW[cell]`: the new state's position + 1, 0 where the table has no entry;
# `_CELL_REASON[cell]`: the reason's number; `_CELL_UNDOES[cell]`: (state, event) is in UNDOES;
# `_RFC_PAIR[old * _NSTATES + new]`: an RFC 9293 edge. (table.py stays the one source: built from it.)
_EVENTS = tuple(Event)
_NEVENTS = cython.declare(i64, len(_EVENTS))
_CELL_NEW = cython.declare(bytes, bytes(
    (_STATES.index(TABLE[_s][_e][0]) + 1) if _e in TABLE.get(_s, {}) else 0 for _s in _STATES for _e in _EVENTS))
_CELL_REASON = cython.declare(tuple, tuple(
    _REASON_ID[TABLE[_s][_e][1]] if _e in TABLE.get(_s, {}) else 0 for _s in _STATES for _e in _EVENTS))
_CELL_UNDOES = cython.declare(bytes, bytes(1 if (_s, _e) in UNDOES else 0 for _s in _STATES for _e in _EVENTS))
_RFC_PAIR = cython.declare(bytes, bytes(1 if is_rfc_edge(_a, _b) else 0 for _a in _STATES for _b in _STATES))


@cython.cfunc
@cython.returns(cython.schar)
def _event_code(event) -> int:
    """An event's position in `Event`."""
    return _position(_EVENTS, event, "an Event")


@cython.cfunc
def _next_state(state, event):
    """The table's new state for `event` in `state` (`TABLE[state][event][0]`), None where it has no entry:
    from the flat lookup, as `_move` reads it (a dict keyed by an Enum member hashes it in Python)."""
    nc: i64 = _CELL_NEW[_state_code(state) * _NEVENTS + _event_code(event)]
    return None if nc == 0 else _STATES[nc - 1]


@cython.cfunc
@cython.returns(cython.bint)
def _waiting_for_fin_ack(state) -> bool:
    """Is `state` one that waits for the ACK of its FIN (FIN_WAIT_1, CLOSING, LAST_ACK)? By identity (a
    frozenset would hash the Enum member in Python)."""
    return state is _FIN_WAIT_1 or state is _CLOSING or state is _LAST_ACK


# Per-state timeouts of the last profile asked for (`_timeouts`): (ns, cause) by state position, None where
# the state has no timer. Profiles are frozen, so the one a connection holds never changes under it.
_TIMEOUTS_OF = cython.declare(object, None)
_TIMEOUTS_NS = cython.declare(tuple, ())


@cython.cfunc
@cython.returns(tuple)
def _timeouts(profile) -> tuple:
    global _TIMEOUTS_OF, _TIMEOUTS_NS
    if profile is not _TIMEOUTS_OF:
        _TIMEOUTS_NS = _timeouts_of(profile)
        _TIMEOUTS_OF = profile
    return _TIMEOUTS_NS


def _timeouts_of(profile) -> tuple:
    """(A function of its own: compiled, a generator expression costs its caller a closure per call.)"""
    return tuple((int(getattr(profile, TIMEOUTS[st][0]) * NS), TIMEOUTS[st][1]) if st in TIMEOUTS else None
                 for st in _STATES)

_NO_PACKET = cython.declare(i64, -1)     # Transition._packet for a timer (the attribute reads None)
# an Endpoint integer field that holds None (no time, sequence number or capture index is this)
_NONE = cython.declare(i64, -0x7FFFFFFFFFFFFFFF)
_I64_MAX = cython.declare(i64, 0x7FFFFFFFFFFFFFFF)


@cython.cfunc
@cython.returns(i64)
@cython.locals(x=i64)
def _held(v):
    """An integer as the int64 field that stores it: saturated at the range's ends, never the None sentinel.
    Times near int64's end (a damaged capture's, clamped there by the decoders) plus a timeout would not
    fit; the uncompiled module saturates the same way."""
    if cython.compiled:
        try:
            x = v
        except OverflowError:
            x = _I64_MAX if v > 0 else _NONE + 1
    else:
        x = min(max(v, _NONE + 1), _I64_MAX)
    return x if x > _NONE else _NONE + 1


@cython.cfunc
@cython.returns(i64)
@cython.locals(t=i64)
def _after(t):
    """The nanosecond after `t`, saturated at int64's end (a damaged capture's times are clamped there)."""
    return t + 1 if t < _I64_MAX else t


# -- the observer model ---------------------------------------------------------------------------------
# Here, in the machine's module, so that the machine's questions to it are C calls (from a module of its
# own each was a Python call that boxed its integers: a seventh of the walk's instructions).
CAPTURE_POINTS = ("auto", "client", "middle", "server")
_MS = cython.declare(i64, 1_000_000)


@cython.final
@cython.no_gc
@cython.cclass
class Observer:
    """One connection's view from the tap: the one-way delays to its client and its server (the observer
    model above). Compiled, 80 bytes and nothing else per connection: the handshake's times are C integers
    (`_NONE`: none yet, read back as None by the properties), not int objects (~130 bytes a connection
    more)."""

    point = cython.declare(str, visibility="public")
    d_client = cython.declare(i64, visibility="public")     # ns, tap -> client
    d_server = cython.declare(i64, visibility="public")     # ns, tap -> server
    _syn_ts = cython.declare(i64)          # `syn_ts`: the latest SYN
    _synack_ts = cython.declare(i64)       # `synack_ts`: the latest SYN+ACK (the one the handshake ACK answers)
    _g_server = cython.declare(i64)        # `g_server`: SYN -> the SYN+ACK that answered it
    measured = cython.declare(cython.bint, visibility="public")   # the delays come from a handshake seen whole
    answered = cython.declare(cython.bint, visibility="public")   # the latest SYN already has its SYN+ACK

    def __init__(self, point: str = "auto"):
        if point not in CAPTURE_POINTS:
            raise ValueError(f"unknown capture point {point!r} (choose from {', '.join(CAPTURE_POINTS)})")
        self.point = point
        self.d_client = 0
        self.d_server = 0
        self.measured = False
        self._syn_ts = self._synack_ts = self._g_server = _NONE
        self.answered = True

    @property
    def syn_ts(self):
        return None if self._syn_ts == _NONE else self._syn_ts

    @syn_ts.setter
    def syn_ts(self, v):
        self._syn_ts = _NONE if v is None else v

    @property
    def synack_ts(self):
        return None if self._synack_ts == _NONE else self._synack_ts

    @synack_ts.setter
    def synack_ts(self, v):
        self._synack_ts = _NONE if v is None else v

    @property
    def g_server(self):
        return None if self._g_server == _NONE else self._g_server

    @g_server.setter
    def g_server(self, v):
        self._g_server = _NONE if v is None else v

    # -- learning from the handshake --------------------------------------------------------------
    @cython.ccall
    @cython.locals(ts=i64)
    def saw_syn(self, ts: int) -> None:
        self._syn_ts, self.answered = ts, False

    @cython.ccall
    @cython.locals(ts=i64)
    def saw_synack(self, ts: int) -> None:
        """A SYN+ACK pairs with the latest SYN not yet answered (a retransmitted SYN+ACK, sent on the
        server's timer, does not); the handshake ACK pairs with the latest SYN+ACK."""
        if not self.answered and self._syn_ts != _NONE:
            self._g_server, self.answered = max(0, ts - self._syn_ts), True
        self._synack_ts = ts

    @cython.ccall
    @cython.locals(ts=i64, g_server=i64, g_client=i64)
    def saw_handshake_ack(self, ts: int) -> None:
        """The client's first acknowledgement of the SYN+ACK: both gaps are known (only the client's when
        the SYN was not captured)."""
        if self.measured or self._synack_ts == _NONE:
            return
        g_server = self._g_server if self._g_server != _NONE else 0
        g_client = max(0, ts - self._synack_ts)
        self.measured = True
        if self.point == "client":
            self.d_client, self.d_server = 0, (g_server + g_client) // 2
        elif self.point == "server":
            self.d_client, self.d_server = (g_server + g_client) // 2, 0
        elif self.point == "middle":
            self.d_client = self.d_server = (g_server + g_client) // 4
        else:
            self.d_client, self.d_server = g_client // 2, g_server // 2

    # -- the three questions ----------------------------------------------------------------------
    @cython.ccall
    @cython.returns(i64)
    @cython.locals(to_client=cython.bint)
    def delay(self, to_client: bool) -> int:
        return self.d_client if to_client else self.d_server

    @cython.ccall
    @cython.returns(i64)
    @cython.locals(ts=i64, to_client=cython.bint)
    def arrival(self, ts: int, to_client: bool) -> int:
        """When a segment seen at `ts` reached its receiver (if it did)."""
        return ts + (self.d_client if to_client else self.d_server)

    @cython.ccall
    @cython.returns(i64)
    @cython.locals(ts=i64, from_client=cython.bint)
    def departure(self, ts: int, from_client: bool) -> int:
        """When a segment seen at `ts` left its sender."""
        return ts - (self.d_client if from_client else self.d_server)

    @cython.ccall
    @cython.returns(cython.bint)
    @cython.locals(ts=i64, from_client=cython.bint, t=i64)
    def sent_after(self, ts: int, from_client: bool, t: int) -> bool:
        """Did the segment seen at `ts` leave its sender after instant `t` (beyond timing noise)?"""
        return self.departure(ts, from_client) > t + self.margin()

    @cython.ccall
    @cython.returns(i64)
    def margin(self) -> int:
        """Timing noise: scheduling and serialisation (1 ms), plus a tenth of the round trip for jitter."""
        return _MS + (self.d_client + self.d_server) // 5

    @cython.ccall
    @cython.returns(i64)
    def rtt(self) -> int:
        return 2 * (self.d_client + self.d_server)

    def place(self) -> str:
        """Where the tap seems to stand: client, server, middle, or unknown (no handshake, no override)."""
        if self.point != "auto":
            return self.point
        total = self.d_client + self.d_server
        if not self.measured or total < 200_000:       # under 0.2 ms round trip: one host or one LAN
            return "unknown" if not self.measured else "near both"
        if self.d_client * 4 < total:
            return "client"
        if self.d_server * 4 < total:
            return "server"
        return "middle"

    def as_dict(self) -> dict:
        return {"capture_point": self.place(), "delay_ms": {"client": round(self.d_client / 1e6, 3),
                                                            "server": round(self.d_server / 1e6, 3)},
                "measured": self.measured}


@cython.final
@cython.no_gc
@cython.cclass
class Transition:
    """One endpoint's state change: what caused it, when the tap saw the cause (`ts`) and when the endpoint
    changed state by the observer model (`at`), and what the packets cannot decide (`alt`, `alt_before`).
    Compiled, an extension type (creating one is the machine's most frequent allocation), 80 bytes: the
    packet index, the cause segment's numbers, the endpoint, the flags, the states (their position in
    `State`) and the table's reason (its number in `_REASONS`) are C integers (no boxed ints, no tuple per
    segment, no pointer per state); `endpoint`, `packet`, `seg`, `rfc`, `retracted`, `old`, `new`, `alt` and
    `reason` read them back as Python values. (Every connection keeps its transitions, four for a plain
    handshake: 128 bytes a connection less than with the states and reason as object pointers.)
    Not tracked by the cyclic collector: it refers only to states, strings and a tuple of them, never to
    anything that could lead back to it."""

    ts = cython.declare(i64, visibility="public")         # ns, observer time of the packet or timer that caused it
    at = cython.declare(i64, visibility="public")         # ns, when the endpoint changed state by the observer model
    _packet = cython.declare(i64)                         # 1-based capture index, _NO_PACKET for timers
    # the cause segment: (sender role, flags, seq, ack, payload length), `seg`; sender 0: no segment
    _seg_seq = cython.declare(cython.uint)
    _seg_ack = cython.declare(cython.uint)
    _seg_plen = cython.declare(cython.uint)
    _seg_flags = cython.declare(cython.ushort)
    _seg_from = cython.declare(cython.char)               # 0 none, 1 client, 2 server
    _server = cython.declare(cython.char)                 # `endpoint`: 0 "client", 1 "server"
    _rfc = cython.declare(cython.char)                    # `rfc`: an edge of the RFC 9293 graph (or a self-loop)
    # `retracted`: undone by later evidence (the segment never reached the endpoint)
    _retracted = cython.declare(cython.char)
    _old = cython.declare(cython.schar)                   # `old`, `new`: states, by their position in `State`
    _new = cython.declare(cython.schar)
    _alt = cython.declare(cython.schar)                   # `alt`: the state it may be in instead, -1 none
    _reason = cython.declare(cython.ushort)               # `reason`: the table's reason, its number in `_REASONS`
    cause = cython.declare(str, visibility="public")      # "SYN", "ACK of FIN", "timer:2MSL", "inferred:midstream"...
    # (since, state): from `since` (endpoint time) until this transition the endpoint may already have been in
    # `state` -- the packets cannot place the change within that span
    alt_before = cython.declare(object, visibility="public")

    def __init__(self, ts, endpoint, old, new, packet, cause, reason, rfc, seg=None, at=0, alt=None,
                 retracted=False, alt_before=None):
        self.ts = ts
        self.endpoint = endpoint
        self._old = _state_code(old)         # (the C fields directly: no property call per field)
        self._new = _state_code(new)
        self.packet = packet
        self.cause = cause
        self._reason = _reason_id(reason)
        self.rfc = rfc
        self.seg = seg
        self.at = at
        self._alt = -1 if alt is None else _state_code(alt)
        self.retracted = retracted
        self.alt_before = alt_before

    @property
    def old(self):
        return _STATES[self._old]

    @old.setter
    def old(self, value):
        self._old = _state_code(value)

    @property
    def new(self):
        return _STATES[self._new]

    @new.setter
    def new(self, value):
        self._new = _state_code(value)

    @property
    def alt(self):
        """The state it may be in instead, where the packets cannot decide (None: none)."""
        return None if self._alt < 0 else _STATES[self._alt]

    @alt.setter
    def alt(self, value):
        self._alt = -1 if value is None else _state_code(value)

    @property
    def reason(self):
        """The table's reason for the change."""
        return _REASONS[self._reason]

    @reason.setter
    def reason(self, value):
        self._reason = _reason_id(value)

    @property
    def endpoint(self):
        """Which endpoint changed: "client" or "server"."""
        return "server" if self._server else "client"

    @endpoint.setter
    def endpoint(self, value):
        if value != "client" and value != "server":
            raise ValueError(f"endpoint must be 'client' or 'server', not {value!r}")
        self._server = value == "server"

    @property
    def rfc(self):
        return bool(self._rfc)

    @rfc.setter
    def rfc(self, value):
        self._rfc = bool(value)

    @property
    def retracted(self):
        return bool(self._retracted)

    @retracted.setter
    def retracted(self, value):
        self._retracted = bool(value)

    @property
    def packet(self):
        """1-based capture index of the cause, None for timers."""
        return None if self._packet == _NO_PACKET else self._packet

    @packet.setter
    def packet(self, value):
        self._packet = _NO_PACKET if value is None else value

    @property
    def seg(self):
        """(sender role, flags, seq, ack, payload length) of the cause segment, None for timers and inferences."""
        if not self._seg_from:
            return None
        return ("client" if self._seg_from == 1 else "server", self._seg_flags, self._seg_seq, self._seg_ack,
                self._seg_plen)

    @seg.setter
    def seg(self, value):
        if value is None:
            self._seg_from = 0
            self._seg_flags = self._seg_plen = 0
            self._seg_seq = self._seg_ack = 0
        else:
            role, self._seg_flags, self._seg_seq, self._seg_ack, self._seg_plen = value
            if role != "client" and role != "server":
                raise ValueError(f"a segment's sender must be 'client' or 'server', not {role!r}")
            self._seg_from = 1 if role == "client" else 2

    def _fields(self) -> tuple:
        return (self.ts, self.endpoint, self.old, self.new, self.packet, self.cause, self.reason, self.rfc,
                self.seg, self.at, self.alt, self.retracted, self.alt_before)

    def __eq__(self, other):
        if not isinstance(other, Transition):
            return NotImplemented
        return self._fields() == other._fields()

    def __repr__(self) -> str:
        return (f"Transition(ts={self.ts}, endpoint={self.endpoint!r}, old={self.old}, new={self.new}, "
                f"packet={self.packet}, cause={self.cause!r}, at={self.at}, alt={self.alt}, "
                f"retracted={self.retracted})")


@dataclass(slots=True)
class Violation:
    ts: int
    endpoint: str
    kind: str               # invalid_transition | out_of_window_rst | data_after_fin
    packet: int | None
    message: str




@cython.final
@cython.no_gc
@cython.cclass
class _Stall:
    """An endpoint's rare evidence for rule 5, kept apart so that an endpoint without it pays one pointer:
    its latest zero-window stall as it advertised it (first zero window, first open window after it) and
    when its data last resumed after a pause (_PAUSE). _NONE: not seen."""

    zw_start = cython.declare(i64)
    zw_end = cython.declare(i64)
    pause_end = cython.declare(i64)

    def __init__(self):
        self.zw_start = self.zw_end = self.pause_end = _NONE


@cython.final
@cython.no_gc
@cython.cclass
class Endpoint:
    """One endpoint's machine state and counters. Compiled, a C struct of typed fields (ints are C integers,
    those that may be None behind properties); uncompiled, a plain object with the same attributes.
    Endpoint and Connection are not tracked by the cyclic collector (no_gc, 16 bytes each): they refer to
    states, strings, numbers, lists of those and each other top-down, never back up. The 8-byte fields come
    first and the 4-byte ones (flags, small counters) after them, so that none is padded: 384 bytes with rule
    5's fields, not 416 (two per tracked connection); rule 5's rare times live in a `_Stall` made when needed."""

    role = cython.declare(str, visibility="public")
    state = cython.declare(object, visibility="public")
    initial = cython.declare(object, visibility="public")
    # ns (endpoint time), when the current state began
    since = cython.declare(i64, visibility="public")
    _isn = cython.declare(i64)
    _fin_seq = cython.declare(i64)         # sequence number our FIN occupies
    # when the last ACK that moved us (of our SYN or FIN) reached us
    _ack_in_at = cython.declare(i64)
    _snd_nxt = cython.declare(i64)         # highest sequence number sent + 1
    # highest acknowledgement sent (what we received)
    _ack_sent = cython.declare(i64)
    wscale = cython.declare(i64, visibility="public")
    # last advertised window, scaled when scaling was agreed
    win = cython.declare(i64, visibility="public")
    # where the packets cannot decide: the other state, from `alt_at` on
    alt = cython.declare(object, visibility="public")
    alt_at = cython.declare(i64, visibility="public")
    # the peer's FIN seen on its way to us, its ACK not (yet) seen: settled by the peer's next moves
    _rx_fin_first = cython.declare(i64)    # ts of the first copy
    _rx_fin_last = cython.declare(i64)     # ts of the latest copy
    _rx_fin_packet = cython.declare(i64)
    # for a peer whose packets never reach the tap: our acknowledgement field is all we know of it
    # our acknowledgement before its last advance
    _ack_prev = cython.declare(i64)
    _ack_adv_ts = cython.declare(i64)      # when our acknowledgement last advanced
    # our FIN to an unseen peer: not retransmitted by then => acked
    _fin_check = cython.declare(i64)
    # our unanswered SYN+ACK: not retransmitted by then => cookie
    _cookie_check = cython.declare(i64)
    # counters
    packets = cython.declare(i64, visibility="public")
    payload = cython.declare(i64, visibility="public")
    ip_bytes = cython.declare(i64, visibility="public")
    retrans = cython.declare(i64, visibility="public")
    # retransmissions since the peer last sent anything
    retrans_unanswered = cython.declare(i64, visibility="public")
    _first_unanswered_ts = cython.declare(i64)
    zero_windows = cython.declare(i64, visibility="public")
    _first_ts = cython.declare(i64)
    _last_ts = cython.declare(i64)
    _last_data_ts = cython.declare(i64)
    # times of our SYN / SYN+ACK (first + retransmissions)
    # `syn_ts`, `fin_ts`: the first time as a C integer (_NONE: none yet), a list only for retransmissions
    # (most connections send one SYN and at most one FIN)
    _syn_first = cython.declare(i64)
    _syn_more = cython.declare(object)
    _fin_first = cython.declare(i64)
    _fin_more = cython.declare(object)
    _deadline = cython.declare(i64)
    deadline_cause = cython.declare(str, visibility="public")
    # when the next retransmission is overdue: it gave up
    _retry_deadline = cython.declare(i64)
    # rule 5's rare evidence (a zero-window stall, a pause of our data): made when first needed
    _stall = cython.declare(_Stall)
    # -- the 4-byte fields --
    # evidence of packets that never reached the tap (rule 5): our last IP Identification (0: none) and
    # how many single steps our seen packets made, -1 once any other step was seen (only a per-connection
    # counter with every packet seen so far makes a gap mean "unseen packets of this connection")
    _ipid = cython.declare(cython.int)
    _ipid_steps = cython.declare(cython.int)
    syn_acked = cython.declare(cython.bint, visibility="public")  # the peer acknowledged our SYN
    fin_acked = cython.declare(cython.bint, visibility="public")
    acked_peer_syn = cython.declare(cython.bint, visibility="public")
    # simultaneous open: the peer's SYN+ACK seen, our ACK of it not yet
    synack_unconfirmed = cython.declare(cython.bint, visibility="public")
    acked_peer_fin = cython.declare(cython.bint, visibility="public")
    # acknowledged new data in FIN_WAIT_2: still owned by an application
    not_orphan = cython.declare(cython.bint, visibility="public")
    # (the peer's FIN on its way to us, see _rx_fin_first) we sent a segment after it arrived that does not ack it
    rx_fin_contra = cython.declare(cython.bint, visibility="public")
    # its SYN_SENT was ended by an ICMP error (a retransmission of that SYN undoes it)
    icmp_closed = cython.declare(cython.bint, visibility="public")
    # counters of control segments and events, C ints (2**31 of them in one connection: a 100 GB capture)
    syns = cython.declare(cython.int, visibility="public")
    synacks = cython.declare(cython.int, visibility="public")
    fins = cython.declare(cython.int, visibility="public")
    rsts = cython.declare(cython.int, visibility="public")
    # ACKs of our FIN proven lost after the tap (we retransmitted after they arrived)
    fin_ack_losses = cython.declare(cython.int, visibility="public")
    rx_fin_copies = cython.declare(cython.int, visibility="public")   # copies of the peer's FIN seen (_rx_fin_first)

    def __init__(self, role: str):
        self._init(role)

    @cython.cfunc
    def _init(self, role: str) -> None:
        """What `__init__` does; a Connection makes its two endpoints with it (`Endpoint.__new__` and this: a
        C call, where `Endpoint(role)` parses its arguments through Python)."""
        self.role = role
        self.state = self.initial = _CLOSED
        self.since = 0
        # (the optional integers as their C fields: None is _NONE; a connection is made per SYN of a flood)
        self._isn = self._fin_seq = self._ack_in_at = self._snd_nxt = self._ack_sent = _NONE
        self.syn_acked = self.fin_acked = self.acked_peer_syn = self.synack_unconfirmed = False
        self.acked_peer_fin = self.not_orphan = self.rx_fin_contra = False
        self.fin_ack_losses = 0
        self.wscale = -1
        self.win = 65535
        self.alt = None
        self.alt_at = 0
        self._rx_fin_first = self._rx_fin_last = self._rx_fin_packet = _NONE
        self.rx_fin_copies = 0
        self._ack_prev = self._ack_adv_ts = self._fin_check = self._cookie_check = _NONE
        self.packets = self.payload = self.ip_bytes = self.syns = self.synacks = self.fins = self.rsts = 0
        self.retrans = self.retrans_unanswered = self.zero_windows = 0
        self._first_unanswered_ts = self._first_ts = self._last_ts = self._last_data_ts = _NONE
        self._syn_first = self._fin_first = _NONE
        self._syn_more = self._fin_more = None
        self._deadline = self._retry_deadline = _NONE
        self.deadline_cause = ""
        self.icmp_closed = False
        self._ipid = self._ipid_steps = 0
        self._stall = None

    @property
    def syn_ts(self):
        """Times of our SYN / SYN+ACK (first + retransmissions): a new list, () when none was sent."""
        return _times(self._syn_first, self._syn_more)

    @property
    def fin_ts(self):
        """Times of our FIN (first + retransmissions): a new list, () when none was sent."""
        return _times(self._fin_first, self._fin_more)

    # the integers that may be None, as C fields (_NONE: None) read and written as Python values
    @property
    def isn(self):
        return None if self._isn == _NONE else self._isn

    @isn.setter
    def isn(self, v):
        self._isn = _NONE if v is None else _held(v)

    @property
    def fin_seq(self):
        return None if self._fin_seq == _NONE else self._fin_seq

    @fin_seq.setter
    def fin_seq(self, v):
        self._fin_seq = _NONE if v is None else _held(v)

    @property
    def ack_in_at(self):
        return None if self._ack_in_at == _NONE else self._ack_in_at

    @ack_in_at.setter
    def ack_in_at(self, v):
        self._ack_in_at = _NONE if v is None else _held(v)

    @property
    def snd_nxt(self):
        return None if self._snd_nxt == _NONE else self._snd_nxt

    @snd_nxt.setter
    def snd_nxt(self, v):
        self._snd_nxt = _NONE if v is None else _held(v)

    @property
    def ack_sent(self):
        return None if self._ack_sent == _NONE else self._ack_sent

    @ack_sent.setter
    def ack_sent(self, v):
        self._ack_sent = _NONE if v is None else _held(v)

    @property
    def rx_fin_first(self):
        return None if self._rx_fin_first == _NONE else self._rx_fin_first

    @rx_fin_first.setter
    def rx_fin_first(self, v):
        self._rx_fin_first = _NONE if v is None else _held(v)

    @property
    def rx_fin_last(self):
        return None if self._rx_fin_last == _NONE else self._rx_fin_last

    @rx_fin_last.setter
    def rx_fin_last(self, v):
        self._rx_fin_last = _NONE if v is None else _held(v)

    @property
    def rx_fin_packet(self):
        return None if self._rx_fin_packet == _NONE else self._rx_fin_packet

    @rx_fin_packet.setter
    def rx_fin_packet(self, v):
        self._rx_fin_packet = _NONE if v is None else _held(v)

    @property
    def ack_prev(self):
        return None if self._ack_prev == _NONE else self._ack_prev

    @ack_prev.setter
    def ack_prev(self, v):
        self._ack_prev = _NONE if v is None else _held(v)

    @property
    def ack_adv_ts(self):
        return None if self._ack_adv_ts == _NONE else self._ack_adv_ts

    @ack_adv_ts.setter
    def ack_adv_ts(self, v):
        self._ack_adv_ts = _NONE if v is None else _held(v)

    @property
    def fin_check(self):
        return None if self._fin_check == _NONE else self._fin_check

    @fin_check.setter
    def fin_check(self, v):
        self._fin_check = _NONE if v is None else _held(v)

    @property
    def cookie_check(self):
        return None if self._cookie_check == _NONE else self._cookie_check

    @cookie_check.setter
    def cookie_check(self, v):
        self._cookie_check = _NONE if v is None else _held(v)

    @property
    def first_unanswered_ts(self):
        return None if self._first_unanswered_ts == _NONE else self._first_unanswered_ts

    @first_unanswered_ts.setter
    def first_unanswered_ts(self, v):
        self._first_unanswered_ts = _NONE if v is None else _held(v)

    @property
    def first_ts(self):
        return None if self._first_ts == _NONE else self._first_ts

    @first_ts.setter
    def first_ts(self, v):
        self._first_ts = _NONE if v is None else _held(v)

    @property
    def last_ts(self):
        return None if self._last_ts == _NONE else self._last_ts

    @last_ts.setter
    def last_ts(self, v):
        self._last_ts = _NONE if v is None else _held(v)

    @property
    def last_data_ts(self):
        return None if self._last_data_ts == _NONE else self._last_data_ts

    @last_data_ts.setter
    def last_data_ts(self, v):
        self._last_data_ts = _NONE if v is None else _held(v)

    @property
    def deadline(self):
        return None if self._deadline == _NONE else self._deadline

    @deadline.setter
    def deadline(self, v):
        self._deadline = _NONE if v is None else _held(v)

    @property
    def retry_deadline(self):
        return None if self._retry_deadline == _NONE else self._retry_deadline

    @retry_deadline.setter
    def retry_deadline(self, v):
        self._retry_deadline = _NONE if v is None else _held(v)

    def __repr__(self) -> str:
        return f"Endpoint({self.role}, {self.state.value}, since={self.since})"


@cython.cfunc
@cython.exceptval(check=False)
@cython.returns(i64)
@cython.locals(ep=Endpoint, now=i64, due=i64, r=i64)
def _due(ep: Endpoint, now: int) -> int:
    """When `ep`'s timer fired, if it did by `now` (`_NONE`: it did not). A retransmitting endpoint whose
    next retransmission is overdue has given up (Linux drops an old half-open request after fewer SYN+ACK
    retries when its queue is half full, for instance); the profile's deadline is the fallback."""
    due = ep._deadline
    r = ep._retry_deadline
    if r != _NONE and r <= now and (due == _NONE or r < due):
        due = r
    return due if due != _NONE and due <= now else _NONE


@cython.cfunc
@cython.returns(i64)
@cython.locals(v=i64)
def _put(v):
    """A C integer as the Endpoint field that stores it (what the property setters do through `_held`)."""
    return v if v > _NONE else _NONE + 1


@cython.cfunc
@cython.inline
@cython.returns(i64)
@cython.locals(a=i64, b=i64)
def _sooner(a, b):
    """The earlier of two optional times held as C fields (`_NONE`: none)."""
    if a == _NONE:
        return b
    return a if b == _NONE or a <= b else b


@cython.cfunc
@cython.locals(x=Endpoint, flags=i64, ack=i64, ts=i64)
def _note_ack(x: Endpoint, flags: int, ack: int, ts: int) -> None:
    if flags & ACK and (x._ack_sent == _NONE or seq_gt(ack, x._ack_sent)):
        x._ack_prev, x._ack_sent, x._ack_adv_ts = x._ack_sent, _put(ack), _put(ts)


@cython.cfunc
@cython.locals(first=i64)
def _times(first: int, more):
    if first == _NONE:
        return ()
    return [first] + more if more is not None else [first]


@cython.cfunc
@cython.locals(ep=Endpoint, syn=cython.bint, t=i64)
def _sent(ep: Endpoint, syn: bool, t: int) -> None:
    """Record that `ep` sent a SYN (or SYN+ACK; `syn`) or a FIN at `t`."""
    if syn:
        if ep._syn_first == _NONE:
            ep._syn_first = t
        elif ep._syn_more is None:
            ep._syn_more = [t]
        else:
            ep._syn_more.append(t)
    elif ep._fin_first == _NONE:
        ep._fin_first = t
    elif ep._fin_more is None:
        ep._fin_more = [t]
    else:
        ep._fin_more.append(t)


# history letters and their bit in Connection._hist_seen (the responder's shifted by 6)
_LETTERS = "SHADFR"
_S = cython.declare(i64, 0)
_H = cython.declare(i64, 1)
_A = cython.declare(i64, 2)
_D = cython.declare(i64, 3)
_F = cython.declare(i64, 4)
_R = cython.declare(i64, 5)
# history -> its 12 successors (a letter of either side appended; None until first made): the strings
# connections share (`Connection._letter`), one dict lookup a new letter
_HISTORIES = cython.declare(dict, {})
_MAX_HISTORIES = cython.declare(i64, 4096)

# The segment table `Connection.feed_plain_rows` reads (int64, one row a segment, C-contiguous): the
# observer's clock, the capture index, whether the lower (address, port) of the 4-tuple sent it (1/0), then
# the header fields as `feed` takes them. track builds it in this layout (tcpfsm/track/_runs.py walks it).
ROW_COLUMNS = ("clock", "packet", "lo", "flags", "seq", "ack", "win", "plen", "wscale", "ip_len", "ipid")
_RC_CLOCK = cython.declare(i64, 0)
_RC_LO = cython.declare(i64, 2)
_RC_FLAGS = cython.declare(i64, 3)
_RC_SEQ = cython.declare(i64, 4)
_RC_ACK = cython.declare(i64, 5)
_RC_WIN = cython.declare(i64, 6)
_RC_PLEN = cython.declare(i64, 7)
_RC_IPLEN = cython.declare(i64, 9)
_RC_IPID = cython.declare(i64, 10)


@cython.final
@cython.no_gc
@cython.cclass
class Connection:
    """The pair of endpoint machines of one connection (one 4-tuple + client ISN)."""

    client = cython.declare(Endpoint, visibility="public")
    server = cython.declare(Endpoint, visibility="public")
    profile = cython.declare(object, visibility="public")
    obs = cython.declare(Observer, visibility="public")
    transitions = cython.declare(list, visibility="public")
    violations = cython.declare(object, visibility="public")   # () until the first one (`_violation`)
    scaling = cython.declare(cython.bint, visibility="public")   # both SYNs carried the window-scale option
    # both ESTABLISHED: plain segments cannot change a state (fast path). (Beside `scaling`: two 4-byte fields
    # in one 8-byte slot, 160 bytes a connection, not 176.)
    steady = cython.declare(cython.bint, visibility="public")
    rst_by = cython.declare(object, visibility="public")
    rst_state = cython.declare(object, visibility="public")
    rst_ts = cython.declare(object, visibility="public")
    rst_packet = cython.declare(object, visibility="public")
    # Zeek-style letters, upper case for the originator
    history = cython.declare(str, visibility="public")
    _hist_seen = cython.declare(i64)
    # the segment being fed (sender role, flags, seq, ack, payload length), which transitions record as their
    # cause; no sender role: none (timers, ICMP, reuse)
    _seg_role = cython.declare(object)
    _seg_flags = cython.declare(cython.int)
    _seg_plen = cython.declare(cython.int)
    _seg_seq = cython.declare(i64)
    _seg_ack = cython.declare(i64)
    # rule 5: the segment is X's first FIN and X sent unseen packets since this time (_NONE: no)
    _seg_hidden = cython.declare(i64)

    @cython.locals(c=Endpoint, sv=Endpoint)
    def __init__(self, profile: TimerProfile, observer=None):
        c = Endpoint.__new__(Endpoint)
        c._init("client")
        sv = Endpoint.__new__(Endpoint)
        sv._init("server")
        self.client = c
        self.server = sv
        self.profile = profile
        self.obs = observer if observer is not None else Observer()
        self.transitions = []
        self.violations = ()
        self.scaling = False
        self.rst_by = None
        self.rst_state = None
        self.rst_ts = None
        self.rst_packet = None
        self.history = ""
        self._hist_seen = 0
        self._seg_role = None
        self._seg_flags = self._seg_plen = 0
        self._seg_hidden = _NONE
        self._seg_seq = self._seg_ack = 0
        self.steady = False

    # -- starting points --------------------------------------------------------------
    @cython.locals(ts=i64, flags=i64, c=Endpoint, s=Endpoint)
    def start(self, ts: int, first_from_client: bool, flags: int) -> None:
        """Set initial states from the first segment seen (before it is fed)."""
        c, s = self.client, self.server
        c.since = s.since = ts
        if flags & SYN:
            s.state = s.initial = _LISTEN        # a SYN is addressed to a (would-be) listener
            if flags & ACK:                           # SYN+ACK first: the SYN was missed
                self._move(c, _INFER_SYN, ts, None, "inferred:SYN not captured")
        elif not flags & RST:
            self._move(c, _MIDSTREAM, ts, None, "inferred:midstream")
            self._move(s, _MIDSTREAM, ts, None, "inferred:midstream")

    @cython.cfunc
    def _violation(self, v: Violation) -> None:
        if self.violations:
            self.violations.append(v)
        else:
            self.violations = [v]

    # -- the table lookup: the only place a state changes ------------------------------
    @cython.ccall
    @cython.returns(cython.bint)
    @cython.locals(ep=Endpoint, ts=i64, tr=Transition, oc=i64, nc=i64, cell=i64, a=i64)
    def _move(self, ep: Endpoint, event: Event, ts: int, packet: int | None, cause: str,
              at: int | None = None, alt: State | None = None, alt_since: int | None = None) -> bool:
        """Apply `event` to `ep` by the table; False (and an invalid_transition) when it does not fit.
        `ts` is the observer's time of the cause, `at` the endpoint's (default: `ts`). (Callers pass `at`,
        `alt` and `alt_since` by position: compiled, a keyword argument sends the call through Python.)"""
        old = ep.state
        oc = _state_code(old)
        cell = oc * _NEVENTS + _event_code(event)
        nc = _CELL_NEW[cell]
        if nc == 0:
            self._violation(Violation(
                ts, ep.role, "invalid_transition", packet,
                f"{ep.role} in {old.value} got {event.value} ({cause}): not a valid TCP transition"))
            return False
        nc -= 1
        new = _STATES[nc]
        a = ts if at is None else at            # (one conversion: C arithmetic from here on)
        if a < ep.since:
            a = ep.since
        if new is old:
            if event is _RCV_FIN and old is _TIME_WAIT:
                self._arm(ep, a, oc)                   # a re-acknowledged FIN restarts 2MSL (TIME_WAIT)
            return True
        # (made field by field: no argument parsing, no tuple, no hash -- the machine's most frequent object)
        tr = Transition.__new__(Transition)
        tr.ts = ts
        tr.at = a
        tr._packet = _NO_PACKET if packet is None else packet
        tr._server = ep is self.server
        tr._old = oc
        tr._new = nc
        tr._alt = -1 if alt is None else _state_code(alt)
        tr._reason = _CELL_REASON[cell]
        tr._rfc = _RFC_PAIR[oc * _NSTATES + nc] != 0
        tr._retracted = False
        tr.cause = cause
        tr.alt_before = (alt_since, new) if alt_since is not None and ep.since < alt_since < a else None
        tr._seg_from = 0
        tr._seg_flags = tr._seg_plen = 0
        tr._seg_seq = tr._seg_ack = 0
        if packet is not None and self._seg_role is not None:
            tr._seg_from = 1 if self._seg_role == "client" else 2
            tr._seg_flags = self._seg_flags
            tr._seg_seq = self._seg_seq
            tr._seg_ack = self._seg_ack
            tr._seg_plen = self._seg_plen
        if _CELL_UNDOES[cell]:
            for prev in reversed(self.transitions):
                if prev.endpoint == ep.role:
                    if prev.new is old and prev.old is new:
                        prev.retracted = tr.retracted = True
                    break
        ep.state = new
        ep.since = a
        ep._retry_deadline = _NONE
        ep.alt = None
        # steady: no segment without SYN, FIN or RST can move either endpoint (feed_plain relies on it), so
        # not while an ACK could still confirm a peer's FIN (one left from before a reset and a new handshake)
        self.steady = self.client.state is _EST and self.server.state is _EST \
            and not self.client.synack_unconfirmed and not self.server.synack_unconfirmed \
            and (self.server._fin_seq == _NONE or self.client.acked_peer_fin) \
            and (self.client._fin_seq == _NONE or self.server.acked_peer_fin)
        self.transitions.append(tr)
        ep._deadline = _NONE
        if new is _SYN_SENT:
            self._arm(ep, ep._syn_first if ep._syn_first != _NONE else a, nc)
        elif new is not _FIN_WAIT_2 or not ep.not_orphan:
            self._arm(ep, a, nc)
        if new is _CLOSED:
            ep._rx_fin_first = _NONE
        return True

    @cython.cfunc
    @cython.locals(ep=Endpoint, code=i64, start=i64, ns=i64)
    def _arm(self, ep: Endpoint, start: int, code: int) -> None:
        """Arm `ep`'s timer for the state at position `code` of `State`, from `start`; saturated at int64's
        end, as the `deadline` setter would (`_held`), in C arithmetic."""
        entry = _timeouts(self.profile)[code]
        if entry is not None:
            ns = entry[0]
            ep._deadline = _I64_MAX if start > _I64_MAX - ns else _put(start + ns)
            ep.deadline_cause = entry[1]

    # -- which connection a segment belongs to (track asks) ----------------------------
    @cython.ccall
    @cython.returns(cython.bint)
    @cython.locals(c=Endpoint, s=Endpoint)
    def finished(self) -> bool:
        """Both endpoints CLOSED (or LISTEN) with no timer left to run: nothing of this connection can change
        but a new one starting on its 4-tuple."""
        c, s = self.client, self.server
        return (c.state is _CLOSED or c.state is _LISTEN) and (s.state is _CLOSED or s.state is _LISTEN) \
            and c._deadline == _NONE and s._deadline == _NONE

    @cython.ccall
    @cython.returns(cython.bint)
    @cython.locals(from_client=cython.bint, flags=i64, seq=i64, c=Endpoint, s=Endpoint, sender=Endpoint)
    def continues(self, from_client: bool, flags: int, seq: int) -> bool:
        """Whether a SYN or SYN+ACK sent by the client (`from_client`) or the server belongs to this connection
        rather than starting a new one on its 4-tuple: a SYN+ACK unless it carries a new ISN after the
        connection finished; the client's SYN retransmitted (same ISN) or its first; the server's own SYN of a
        simultaneous open. (track's FlowTable decides the rest: a new connection, TIME_WAIT reuse.)"""
        c, s = self.client, self.server
        sender = c if from_client else s
        if flags & ACK:
            return sender._isn == _NONE or sender._isn == seq or not self.finished()
        if from_client:
            return c._isn == seq or (c._isn == _NONE and c.state is _SYN_SENT)
        return s._isn == _NONE and c.state is _SYN_SENT and s.state is _LISTEN

    # -- time -------------------------------------------------------------------------
    @cython.ccall
    @cython.locals(c=Endpoint, s=Endpoint, due=i64)
    def next_deadline(self) -> int | None:
        """The earliest time something may change without a packet: a state timer, an overdue
        retransmission, or the check that a FIN sent to a peer never seen was not retransmitted."""
        c, s = self.client, self.server               # (their C fields, _NONE for None: once a segment)
        due = _sooner(_sooner(_sooner(c._deadline, c._retry_deadline), _sooner(c._fin_check, c._cookie_check)),
                      _sooner(_sooner(s._deadline, s._retry_deadline), _sooner(s._fin_check, s._cookie_check)))
        return None if due == _NONE else due

    @cython.ccall
    @cython.locals(now=i64, c=Endpoint, s=Endpoint, ep=Endpoint, e=Endpoint, peer=Endpoint, kind=cython.int, first=i64,
                   when=i64, d=i64, side=cython.int)
    def expire(self, now: int) -> None:
        """Fire every timer due at or before `now`, in time order."""
        c, s = self.client, self.server
        if c._deadline == _NONE and s._deadline == _NONE and c._retry_deadline == _NONE \
                and s._retry_deadline == _NONE and c._fin_check == _NONE and s._fin_check == _NONE \
                and c._cookie_check == _NONE and s._cookie_check == _NONE:
            return                   # (no timer: the C fields, read before each segment)
        for _ in range(16):          # at most a few timers per endpoint can be due at once
            # the earliest due timer of either endpoint; at equal times a state timer first, then the
            # unseen-peer FIN check, then the SYN-cookie check
            # ((when, kind) compared as a pair, the client's first at a tie, in C integers: kind -1 is none)
            kind = -1
            when = 0
            ep = None
            for side in range(2):
                e = c if side == 0 else s
                d = _due(e, now)
                if d != _NONE and (kind < 0 or d < when or (d == when and kind > 0)):
                    when, kind, ep = d, 0, e
                d = e._fin_check
                if d != _NONE and d <= now and (kind < 0 or d < when or (d == when and kind > 1)):
                    when, kind, ep = d, 1, e
                d = e._cookie_check
                if d != _NONE and d <= now and (kind < 0 or d < when):
                    when, kind, ep = d, 2, e
            if kind < 0:
                return
            if kind == 1:
                self._fin_acked_unseen(ep, when, final=False)
                continue
            if kind == 2:
                ep.cookie_check = None
                if ep.state is _SYN_RECEIVED and ep.synacks == 1 and not ep.syn_acked:
                    peer = s if ep is c else c
                    if peer.packets:
                        self._move(ep, _COOKIE, when, None, "inferred:SYN cookie (SYN+ACK never retransmitted)",
                                   self.obs.departure(ep.syn_ts[0], ep is c))
                    else:
                        # A peer never seen (one-sided capture): its handshake ACK could not have been seen
                        # either. Not retransmitted, the SYN+ACK was most likely acknowledged (as a FIN to an
                        # unseen peer is); or it was a SYN cookie nobody answered: said as `alt`.
                        first = ep.syn_ts[0]
                        ep.syn_acked = True
                        self._move(ep, _INFER_SYNCED, when, None,
                                   "inferred:SYN+ACK acknowledged (never retransmitted, peer unseen)",
                                   self.obs.departure(first, ep is c) + self.obs.rtt(), _CLOSED)
                        if peer.state is _SYN_SENT:
                            peer.acked_peer_syn = True
                            self._move(peer, _INFER_SYNCED, when, None,
                                       "inferred:SYN+ACK received (never retransmitted, peer unseen)",
                                       self.obs.arrival(first, peer is c))
                continue
            cause = ep.deadline_cause
            since = None
            if ep.deadline is None or when < ep.deadline:
                cause += " (retransmissions stopped)"
                # It gave up (or its application closed) some time after its last retransmission, by the
                # overdue deadline at the latest: the packets cannot say when, so say so.
                times = ep.syn_ts if ep.state in (_SYN_SENT, _SYN_RECEIVED) else ep.fin_ts
                if times:
                    since = self.obs.departure(times[-1], ep is self.client) + 1
            ep.deadline = ep.retry_deadline = None
            self._move(ep, _TIMEOUT, when, None, cause, when, None, since)

    @cython.ccall
    @cython.locals(end=i64, c=Endpoint, s=Endpoint, ep=Endpoint, peer=Endpoint)
    def settle(self, end: int) -> None:
        """The capture ended at `end`: decide what is still open, marking with `alt` what cannot be known."""
        self.expire(end)
        c, s = self.client, self.server
        for ep in (c, s):                   # first what each endpoint received, then what that implies
            if ep.rx_fin_first is not None:
                self._settle_fin(ep, end)
        for ep in (c, s):
            if ep.fin_check is not None:
                self._fin_acked_unseen(ep, end, final=True)
        for ep, peer in ((c, s), (s, c)):
            if not peer.packets and ep.packets:
                self._infer_unseen_fin(ep, peer, end, final=True)
        # rule 6: a peer never seen (a one-sided capture) may have reset the connection at any time after the
        # seen endpoint's last packet: its RST would not reach the tap, and the endpoint sends nothing more
        # either way. A connection still open at the end is open, or closed by the peer, from then on.
        for ep, peer in ((c, s), (s, c)):
            if not peer.packets and ep._last_ts != _NONE:
                since = _after(self.obs.departure(ep._last_ts, ep is c))
                for z in (ep, peer):
                    if z.alt is None and z.state in _RESETTABLE and since > z.since:
                        z.alt, z.alt_at = _CLOSED, since
        # a retransmitting endpoint whose next retransmission was due before the end and did not come: it may
        # have given up (or its application closed) any time since its last one
        for ep in (c, s):
            if ep._retry_deadline == _NONE or ep.alt is not None:      # (most: nothing to look up)
                continue
            times = ep.syn_ts if ep.state in (_SYN_SENT, _SYN_RECEIVED) else ep.fin_ts
            after = _next_state(ep.state, _TIMEOUT)
            if after is not None and len(times) >= 2 \
                    and end > times[-1] + (times[-1] - times[-2]) + self.obs.margin():
                ep.alt, ep.alt_at = after, self.obs.departure(times[-1], ep is c) + 1
        # a SYN+ACK seen on its way to a client that never answered it: did it arrive? (only when the
        # capture ended before its SYN retransmission would have shown it did not)
        if c.state is _SYN_SENT and s.synacks and c.alt is None:
            arrived = self.obs.arrival(s.syn_ts[-1], True)
            if end < arrived + self.obs.rtt() + _SYNACK_WAIT and not self._sent_after(c, arrived, SYN):
                c.alt, c.alt_at = _EST, arrived

    @cython.cfunc
    @cython.returns(cython.bint)
    @cython.locals(ep=Endpoint, flag=i64)
    def _sent_after(self, ep: Endpoint, t: int, flag: int) -> bool:
        """Did `ep` send a segment with `flag` after instant `t` (endpoint time)?"""
        times = ep.syn_ts if flag == SYN else ep.fin_ts
        for x in times:
            if self.obs.sent_after(x, ep is self.client, t):
                return True
        return False

    @cython.cfunc
    @cython.locals(ep=Endpoint, end=i64, to_client=cython.bint, cut_short=cython.bint)
    def _settle_fin(self, ep: Endpoint, end: int) -> None:
        """The capture ended with the peer's FIN seen going to `ep` and `ep`'s ACK of it never seen.

        Certain: `ep` sent something after the FIN reached it without acknowledging it, so it did not get
        it. Otherwise the packets cannot decide, and the likelier state is kept with the other as `alt`:
        - the capture ended before an ACK could have come back (one round trip and Linux's longest
          delayed ACK): most FINs arrive, so it did;
        - `ep` was never seen sending anything (a one-sided capture): its ACK could not have been seen
          anyway, and a sender that did not retransmit was answered, so it did;
        - otherwise `ep`'s packets do reach the tap, yet no ACK came, or the sender kept retransmitting:
          most likely it did not."""
        first, last, copies, contra, packet = (ep.rx_fin_first, ep.rx_fin_last, ep.rx_fin_copies,
                                               ep.rx_fin_contra, ep.rx_fin_packet)
        ep.rx_fin_first = None
        if contra or ep.state is _CLOSED or ep.acked_peer_fin:
            return
        after = _next_state(ep.state, _RCV_FIN)
        if after is None or after is ep.state:
            return
        to_client = ep is self.client
        at = self.obs.arrival(first, to_client)
        cut_short = end < self.obs.arrival(last, to_client) + self.obs.rtt() + _ACK_WAIT
        if (cut_short or not ep.packets) and copies == 1:
            ep.acked_peer_fin = True
            why = "the capture ended first" if cut_short else "no packet from the receiver was captured"
            # decided at the capture's end (`ts`, so that stream consumers see it in time order); the
            # endpoint's own time is the FIN's arrival
            self._move(ep, _RCV_FIN, end, packet, f"FIN (its ACK not seen: {why})", at, ep.state)
        else:
            ep.alt, ep.alt_at = after, at           # no ACK though one would have been seen: likely lost

    @cython.cfunc
    @cython.locals(ep=Endpoint, times=list)
    def _retry(self, ep: Endpoint, times: list[int]) -> None:
        """After a retransmission, expect the next one by twice the last gap (exponential back-off), and never
        sooner than a second and a round trip: copies a few microseconds apart (a tail-loss probe, a
        duplicate) say nothing about the retransmission timer."""
        if len(times) >= 2:
            gap = times[-1] - times[-2]
            ep.retry_deadline = times[-1] + max(2 * gap + gap // 4, NS) + 200_000_000 + 2 * self.obs.rtt()

    @cython.locals(ep=Endpoint)
    def alt_of(self, ep: Endpoint) -> State | None:
        """The state `ep` may be in instead of its current one, where the packets could not decide."""
        if ep.alt is not None:
            return ep.alt
        for t in reversed(self.transitions):
            if t.endpoint == ep.role and not t.retracted:
                return t.alt
        return None

    @cython.ccall
    @cython.locals(t=Transition, n=i64)
    def non_rfc(self) -> int:
        """How many of its transitions are not edges of the RFC 9293 graph (`Transition.rfc` false)."""
        n = 0
        for t in self.transitions:
            if not t._rfc:
                n += 1
        return n

    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(t=Transition, out=cython.longlong[::1], i=i64, k=i64, n=i64, old=i64, new=i64, alt=i64,
                   cid=i64, causes=dict)       # (a typed dict: `causes.get` is a C call, not a method lookup)
    def transition_rows(self, out, causes: dict) -> int:
        """The transitions as compact columns for a renderer (tcpfsm/render/_emit.py), without a Python
        object per field: TRANSITION_ROW int64s per transition in `out` (at least that many times
        len(self.transitions) long): ts (ns), packet (-1 for a timer), the cause's id in `causes`
        (str -> id, ids handed out in order of first sight: the caller keeps one dict for a whole
        rendering), and old | new << 8 | (alt + 1) << 16 | server << 24 | retracted << 25, states by their
        position in `State` (alt + 1 == 0: none). Returns the number of transitions."""
        n = len(self.transitions)
        i = 0
        for t in self.transitions:
            old, new, alt = t._old, t._new, t._alt
            c = t.cause
            got = causes.get(c)
            if got is None:
                cid = len(causes)
                causes[c] = cid
            else:
                cid = got
            out[i] = t.ts
            out[i + 1] = t._packet
            out[i + 2] = cid
            out[i + 3] = old | (new << 8) | ((alt + 1) << 16) | (cython.cast(i64, t._server) << 24) | \
                (cython.cast(i64, t._retracted) << 25)
            i += _ROW
        return n

    @cython.locals(ep=Endpoint)
    def pending(self, ep: Endpoint) -> tuple[int, State] | None:
        """The timer that would next change `ep` if no packet came: (when, new state)."""
        if ep.deadline is None:
            return None
        after = _next_state(ep.state, _TIMEOUT)
        return (ep.deadline, after) if after is not None else None

    # -- counting: the one place counters and history letters change -------------------
    @cython.cfunc
    @cython.locals(from_client=cython.bint, i=i64, bit=i64, k=i64, succ=list)
    def _letter(self, from_client: bool, i: int) -> None:
        """History letter `_LETTERS[i]` (`_S`, `_H`, ...), the first time this side shows it."""
        k = i + (0 if from_client else 6)
        bit = 1 << k
        if not self._hist_seen & bit:
            self._hist_seen |= bit
            # one string per history seen (few: "ShADad" and its kin), not one per connection
            succ = _HISTORIES.get(self.history)
            if succ is None:
                succ = [None] * 12
                if len(_HISTORIES) < _MAX_HISTORIES:
                    _HISTORIES[self.history] = succ
            h = succ[k]
            if h is None:
                h = succ[k] = self.history + (_LETTERS[i] if from_client else _LETTERS[i].lower())
            self.history = h

    @cython.cfunc
    @cython.locals(x=Endpoint, y=Endpoint, from_client=cython.bint, ts=i64, flags=i64, seq=i64, plen=i64,
                   ip_len=i64, win=i64, ipid=i64, syn=i64, end=i64, st=_Stall)
    def _count(self, x: Endpoint, from_client: bool, ts: int, flags: int, seq: int, plen: int, ip_len: int,
               win: int, ipid: int) -> None:
        """Counters, sequence bookkeeping and history letters of one segment sent by `x`. (The fields that may
        be None are read and written as their C fields, `_NONE` for None: this runs for every packet.)"""
        x.packets += 1
        x.payload += plen
        x.ip_bytes += ip_len
        if x._first_ts == _NONE:
            x._first_ts = _put(ts)
        x._last_ts = _put(ts)
        if ipid:
            if x._ipid and x._ipid_steps >= 0:
                x._ipid_steps = x._ipid_steps + 1 if ((ipid - x._ipid) & 0xFFFF) == 1 else -1
            x._ipid = ipid
        y = self.server if from_client else self.client
        y.retrans_unanswered = 0
        syn = flags & SYN
        if flags & RST:
            self._letter(from_client, _R)
        elif syn:
            self._letter(from_client, _H if flags & ACK else _S)
        elif flags & FIN:
            self._letter(from_client, _F)
        elif not plen and flags & ACK:
            self._letter(from_client, _A)
        if plen:
            self._letter(from_client, _D)
        if flags & RST:
            return                                   # a RST's sequence number moves nothing
        if plen:
            if x._last_data_ts != _NONE and ts - x._last_data_ts >= _PAUSE:
                if x._stall is None:
                    x._stall = _Stall()
                x._stall.pause_end = ts
            x._last_data_ts = _put(ts)
            if x._snd_nxt != _NONE and seq_gt(x._snd_nxt, seq):   # seq < snd_nxt: a retransmission
                x.retrans += 1
                if not x.retrans_unanswered:
                    x._first_unanswered_ts = _put(ts)
                x.retrans_unanswered += 1
        end = (seq + plen + (1 if syn else 0) + (flags & FIN)) & _M32
        if x._snd_nxt == _NONE or seq_gt(end, x._snd_nxt):
            x._snd_nxt = end
        if not syn:
            x.win = win << (x.wscale if self.scaling and x.wscale > 0 else 0)
            if not win:
                x.zero_windows += 1
                if x._stall is None:
                    x._stall = _Stall()
                st = x._stall
                if st.zw_start == _NONE or st.zw_end != _NONE:     # a new stall
                    st.zw_start = ts
                    st.zw_end = _NONE
            elif x._stall is not None and x._stall.zw_start != _NONE and x._stall.zw_end == _NONE:
                x._stall.zw_end = ts

    @cython.ccall
    @cython.locals(ts=i64, from_client=cython.bint, flags=i64, seq=i64, ack=i64, win=i64, plen=i64, ip_len=i64,
                   ipid=i64, x=Endpoint)
    def feed_plain(self, ts: int, from_client: bool, flags: int, seq: int, ack: int, win: int, plen: int,
                   ip_len: int, ipid: int = 0) -> None:
        """A segment without SYN, FIN or RST while both endpoints are ESTABLISHED (`steady`): it can change
        no state, so only the counters are updated. This is the path of nearly every packet of a capture;
        `feed` is the reference it must agree with."""
        x = self.client if from_client else self.server
        self._count(x, from_client, ts, flags, seq, plen, ip_len, win, ipid)
        _note_ack(x, flags, ack, ts)

    @cython.ccall
    @cython.annotation_typing(True)          # (the one way to type a memoryview argument here)
    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(from_client=cython.bint, ts=i64, flags=i64, x=Endpoint)
    def feed_plain_rows(self, rows: cython.const[cython.longlong][:, ::1], p: i64, e: i64,
                        lo_is_client: cython.bint) -> i64:
        """Segments of this steady connection, rows p, p + 1, ... (before `e`) of a table laid out as
        ROW_COLUMNS: each fed as `feed_plain` would, up to the first that carries SYN, FIN or RST (which may
        change a state: it goes through `feed`). Returns that row, or `e`. `lo_is_client`: the rows' `lo`
        side is the client. (track's vectorized path: most packets of a capture pass here, in one call a run.)"""
        if not cython.compiled:
            rows = memoryview(rows)          # (Python ints, as the compiled form reads C integers)
        while p < e:
            flags = rows[p, _RC_FLAGS]
            if flags & 7:
                break
            ts = rows[p, _RC_CLOCK]
            from_client = (rows[p, _RC_LO] != 0) == lo_is_client
            x = self.client if from_client else self.server
            self._count(x, from_client, ts, flags, rows[p, _RC_SEQ], rows[p, _RC_PLEN], rows[p, _RC_IPLEN],
                        rows[p, _RC_WIN], rows[p, _RC_IPID])
            _note_ack(x, flags, rows[p, _RC_ACK], ts)
            p += 1
        return p

    # -- segments ---------------------------------------------------------------------
    @cython.ccall
    @cython.locals(ts=i64, from_client=cython.bint, flags=i64, seq=i64, ack=i64, win=i64, plen=i64,
                   wscale=i64, ip_len=i64, ipid=i64, x=Endpoint, y=Endpoint, syn=i64, hasack=i64, gap=i64,
                   obs=Observer)
    def feed(self, ts: int, packet: int, from_client: bool, flags: int, seq: int, ack: int, win: int,
             plen: int, wscale: int, ip_len: int, ipid: int = 0) -> None:
        if from_client:                          # (not a tuple swap: two C assignments)
            x, y = self.client, self.server
        else:
            x, y = self.server, self.client
        self._seg_role = x.role
        self._seg_flags = flags
        self._seg_seq = seq
        self._seg_ack = ack
        self._seg_plen = plen
        obs = self.obs
        # rule 5: X's first FIN, more than one IP ID step past X's previous packet, starting where X's data
        # ended (read before this segment is counted)
        self._seg_hidden = _NONE
        if flags & FIN and ipid and x._ipid and x._ipid_steps > 0 and x._fin_seq == _NONE and x._last_ts != _NONE \
                and x._snd_nxt == seq:
            gap = (ipid - x._ipid) & 0xFFFF
            if 2 <= gap <= _HIDDEN_MAX:
                self._seg_hidden = _after(obs.departure(x._last_ts, from_client))
        self._count(x, from_client, ts, flags, seq, plen, ip_len, win, ipid)
        if flags & RST:
            x.rsts += 1
            self._rst(x, y, ts, packet, flags, seq, ack)
            return
        syn, hasack = flags & SYN, flags & ACK
        if plen and x._fin_seq != _NONE and seq_gt((seq + plen) & _M32, x._fin_seq):
            self._violation(Violation(
                ts, x.role, "data_after_fin", packet,
                f"{x.role} sent {plen} bytes at seq {seq} after its FIN (seq {x.fin_seq})"))

        # The handshake as the observer saw it: the delays to both sides.
        if syn and hasack:
            obs.saw_synack(ts)
        elif syn:
            obs.saw_syn(ts)
        elif hasack and from_client and not obs.measured and self.server._isn != _NONE \
                and seq_gt(ack, self.server._isn) and self.client.state is _SYN_SENT:
            obs.saw_handshake_ack(ts)       # (the ACK that completes it, not a later one: TFO, inference)
            if obs.measured:
                self._restamp_handshake()

        # A handshake we did not see: only the client's own ACK proves that a SYN+ACK reached it. A
        # "server" talking before any SYN+ACK is a violation (the client's SYN retransmissions would show it).
        if not syn and hasack and self.client.state is _SYN_SENT and self.server._isn == _NONE:
            if x is self.server:
                self._violation(Violation(
                    ts, x.role, "invalid_transition", packet,
                    f"server sent a segment without SYN (flags {flags:#x}) before any SYN+ACK, to a client in "
                    "SYN_SENT; ignored"))
                return
            self.server.isn = (ack - 1) & _M32
            self.server.acked_peer_syn = True
            if self.server.state in (_LISTEN, _CLOSED):
                self._move(self.server, _INFER_SYNACK, ts, packet, "inferred:SYN+ACK not captured")

        # A segment from Y that does not acknowledge X's FIN, sent after that FIN reached Y: Y did not get it.
        if hasack and x._rx_fin_first != _NONE and y._fin_seq != _NONE and not seq_gt(ack, y._fin_seq) \
                and obs.sent_after(ts, from_client, obs.arrival(x.rx_fin_last, from_client)):
            x.rx_fin_contra = True

        for ep, event, cause, at in self._classify(x, y, from_client, ts, packet, flags, seq, ack, plen):
            if ep is None:                               # it fits no connection: report, ignore the rest
                self._violation(Violation(ts, x.role, "invalid_transition", packet, cause))
                break
            self._apply(ep, ep is x, event, cause, ts, packet, at, flags, seq, ack, wscale, from_client)
        else:
            if hasack and x.state is _FIN_WAIT_2 and not x.not_orphan and x.ack_sent is not None \
                    and seq_gt(ack, x.ack_sent):
                # An orphaned Linux socket answers data in FIN_WAIT_2 with RST; acknowledging it means an
                # application still owns the socket (shutdown(SHUT_WR)), so fin_timeout does not apply.
                x.not_orphan = True
                x.deadline = None
        _note_ack(x, flags, ack, ts)
        # a retransmitted SYN+ACK after the handshake ACK was seen: that ACK was lost (table undoes it)
        if syn and hasack and x.state is _SYN_RECEIVED and x.syn_acked:
            x.syn_acked = False

    # -- a peer whose packets never reach the tap (one-sided capture) ------------------------------
    @cython.cfunc
    @cython.locals(obs=Observer, x=Endpoint, y=Endpoint, ts=i64, final=cython.bint, from_client=cython.bint)
    def _infer_unseen_fin(self, x: Endpoint, y: Endpoint, ts: int, final: bool) -> None:
        """`y` is never seen. If `x`'s acknowledgement last advanced by exactly one and never again, that
        one was `y`'s FIN (a last single byte of data is rare; `alt` says so when the capture ended):
        infer `y`'s FIN, `x`'s receipt of it and `y`'s receipt of that ACK. Called when `x` closes in
        turn, and at the end of the capture. Decided at `ts`; stamped when it happened."""
        if y.packets or y._fin_seq != _NONE or x.ack_prev is None or x.ack_sent is None \
                or (x.ack_sent - x.ack_prev) & _M32 != 1 or x.acked_peer_fin or y.state is not _EST \
                and y.state is not _CLOSE_WAIT:
            return
        obs = self.obs
        t = x.ack_adv_ts
        from_client = x is self.client
        y.fin_seq = x.ack_prev
        _sent(y, False, t)
        alt_y = y.state if final else None
        self._move(y, _SND_FIN, ts, None, "inferred:FIN not captured (the peer's ACK advanced by one)",
                   obs.departure(t, from_client) - obs.delay(not from_client) - obs.delay(from_client), alt_y)
        x.acked_peer_fin = True
        x.rx_fin_first = None
        self._move(x, _RCV_FIN, ts, None, "inferred:ACK of a FIN not captured",
                   obs.departure(t, from_client), x.state if final else None)
        y.fin_acked = True
        self._move(y, _RCV_ACK_OF_FIN, ts, None, "inferred:ACK of FIN", obs.arrival(t, not from_client))

    @cython.cfunc
    @cython.locals(ep=Endpoint, peer=Endpoint, when=i64, final=cython.bint)
    def _fin_acked_unseen(self, ep: Endpoint, when: int, final: bool) -> None:
        """`ep` sent a FIN to a peer never seen and did not retransmit it: it was acknowledged."""
        ep.fin_check = None
        peer = self.server if ep is self.client else self.client
        if peer.packets or ep.fin_acked or not _waiting_for_fin_ack(ep.state) or not ep.fin_ts:
            return
        if peer._rx_fin_first != _NONE and not final and peer.rx_fin_copies == 1:
            # acknowledged, so it arrived: the unseen peer received the FIN
            first, packet = peer.rx_fin_first, peer.rx_fin_packet
            peer.rx_fin_first = None
            if _next_state(peer.state, _RCV_FIN) is not None and not peer.acked_peer_fin:
                peer.acked_peer_fin = True
                self._move(peer, _RCV_FIN, when, packet, "inferred:FIN received (not retransmitted)",
                           self.obs.arrival(first, peer is self.client))
        ep.fin_acked = True
        at = self.obs.departure(ep.fin_ts[-1], ep is self.client) + self.obs.rtt()
        self._move(ep, _RCV_ACK_OF_FIN, when, None,
                   "inferred:FIN acknowledged (" + ("capture ended" if final else "not retransmitted") + ")",
                   at, ep.state if final else None)

    @cython.cfunc
    @cython.locals(obs=Observer, times=list, to_client=cython.bint, answered_at=i64, slack=i64)
    def _copy_received(self, times: list[int], to_client: bool, answered_at: int) -> int:
        """Of a segment sent several times (SYN+ACK, FIN) whose receiver answered at `answered_at`
        (endpoint time), when did the copy it answered arrive? The latest that arrived before it answered."""
        obs = self.obs
        best = times[0]
        slack = obs.margin()                 # the answer may follow sooner than the estimated delays say
        for t in times:
            if obs.arrival(t, to_client) <= answered_at + slack:
                best = t
        # it had the segment by the time it answered, and not before the segment left (clocks that step
        # back, or delays estimated from a handshake unlike the rest, must not reorder cause and effect)
        return max(obs.departure(best, not to_client), min(obs.arrival(best, to_client), answered_at))

    @cython.cfunc
    @cython.locals(x=Endpoint, y=Endpoint, from_client=cython.bint, ts=i64, flags=i64, seq=i64, ack=i64, plen=i64,
                   out=list, syn=i64, hasack=i64, sent=i64, fin_at=i64, arrive=i64, obs=Observer)
    def _classify(self, x: Endpoint, y: Endpoint, from_client: bool, ts: int, packet: int, flags: int, seq: int,
                  ack: int, plen: int) -> list[tuple[Endpoint | None, Event | None, str, int]]:
        """The endpoint events of one segment (no RST), in the order of the theory of operation, read
        against the bookkeeping as it stood before the segment. Pure: it changes nothing."""
        obs = self.obs
        out: list = []
        syn, hasack = flags & SYN, flags & ACK
        sent = obs.departure(ts, from_client)
        # a. what X's acknowledgement says X received
        if hasack and not syn:
            if x.synack_unconfirmed:
                out.append((x, _RCV_ACK_OF_SYN, "ACK of SYN+ACK", sent))
            if y._isn != _NONE and not x.acked_peer_syn and seq_gt(ack, y._isn):
                at = self._copy_received(y.syn_ts, from_client, sent) if y._syn_first != _NONE else sent
                out.append((x, _RCV_SYNACK, "ACK of SYN+ACK", at))
            if y._fin_seq != _NONE and not x.acked_peer_fin and seq_gt(ack, y._fin_seq):
                at = self._copy_received(y.fin_ts, from_client, sent) if y._fin_first != _NONE else sent
                out.append((x, _RCV_FIN, "ACK of FIN", at))
        # b. what X sent
        if syn:
            if x._isn != _NONE and seq != x._isn:
                kind = "SYN+ACK" if hasack else "SYN"
                where = "its earlier SYN had" if hasack else "inside a connection whose ISN is"
                # no endpoint: the segment is reported (by the caller) and the rest of it ignored
                out.append((None, None, f"{x.role} sent a {kind} with ISN {seq}, {where} {x.isn}", 0))
                return out
            out.append((x, _SND_SYNACK if hasack else _SND_SYN, "SYN+ACK" if hasack else "SYN", sent))
        if flags & FIN:
            fin_at = (seq + plen + (1 if syn else 0)) & _M32
            if x._fin_seq == _NONE:
                out.append((x, _SND_FIN, "FIN", sent))
            elif fin_at == x._fin_seq:
                out.append((x, _SND_FIN, "FIN retransmitted", sent))
            elif seq_gt(fin_at, x._fin_seq):
                out.append((x, None, "second FIN", sent))
        # c. what Y learns from X's acknowledgement
        if hasack:
            arrive = obs.arrival(ts, not from_client)
            if y._isn != _NONE and not y.syn_acked and seq_gt(ack, y._isn):
                out.append((y, _RCV_ACK_OF_SYN, "ACK of SYN", arrive))
            if y._fin_seq != _NONE and not y.fin_acked and seq_gt(ack, y._fin_seq):
                out.append((y, _RCV_ACK_OF_FIN, "ACK of FIN", arrive))
            # d. X acknowledges Y's data beyond its SYN: Y had completed its handshake, and X had received
            # a segment from Y that acknowledged X's SYN.
            if not syn and y._isn != _NONE and seq_gt(ack, (y._isn + 1) & _M32):
                if y.state in (_SYN_SENT, _SYN_RECEIVED) and not y.synack_unconfirmed:
                    out.append((y, _INFER_SYNCED, "inferred:peer acknowledged its data",
                                obs.arrival(x._syn_first, not from_client) if x._syn_first != _NONE else sent))
                if x.state is _SYN_RECEIVED and not x.synack_unconfirmed:
                    out.append((x, _INFER_SYNCED, "inferred:it acknowledged the peer's data", sent))
                    return out
            # An endpoint in SYN_RECEIVED sends nothing but its SYN+ACK until the handshake ACK arrives:
            # any other segment means it had arrived, and so the peer had received the SYN+ACK.
            if not syn and x.state is _SYN_RECEIVED and not x.synack_unconfirmed \
                    and (x._isn == _NONE or seq_gt(seq, x._isn) or plen or flags & FIN):
                out.append((x, _INFER_SYNCED, "inferred:it sent beyond its SYN+ACK", sent))
                if y.state is _SYN_SENT:
                    out.append((y, _INFER_SYNCED, "inferred:the peer completed its handshake",
                                obs.arrival(x.syn_ts[-1], not from_client) if x._syn_first != _NONE else sent))
        return out

    @cython.cfunc
    @cython.locals(ep=Endpoint, x=Endpoint, y=Endpoint, is_x=cython.bint, ts=i64, flags=i64, seq=i64, ack=i64,
                   wscale=i64, from_client=cython.bint, fin_at=i64, first=object, obs=Observer, other=Endpoint)
    def _apply(self, ep: Endpoint, is_x: bool, event: Event | None, cause: str, ts: int, packet: int, at: int,
               flags: int, seq: int, ack: int, wscale: int, from_client: bool) -> None:
        """The bookkeeping an event carries, then its table lookup."""
        other = self.server if ep is self.client else self.client
        if is_x:
            x, y = ep, other
        else:
            x, y = other, ep
        obs = self.obs
        if event is _RCV_ACK_OF_SYN and is_x:         # simultaneous open: our ACK of the SYN+ACK seen
            x.synack_unconfirmed = False
            self._move(x, event, ts, packet, cause, at)
        elif event is _RCV_SYNACK:
            x.acked_peer_syn = True
            self._move(x, event, ts, packet, cause, at)
        elif event is _RCV_FIN:
            x.acked_peer_fin = True
            x._rx_fin_first = _NONE
            # Copies of the FIN seen before the one it answered: did an earlier one arrive, its ACK lost
            # before the tap, or were they lost after it? The wire looks the same either way.
            first = obs.arrival(y._fin_first, from_client) if y._fin_first != _NONE else None
            self._move(x, event, ts, packet, cause, at, None,
                       first if y._fin_more is not None and cause == "ACK of FIN" else None)
        elif event is _SND_SYNACK:
            if x._isn == _NONE:
                x._isn = _put(seq)
            if y._isn == _NONE:
                y._isn = (ack - 1) & _M32             # the SYN it answers was not captured
            x.synacks += 1
            _sent(x, True, ts)
            if y._isn != _NONE and ack == (y._isn + 1) & _M32:
                x.acked_peer_syn = True
            if wscale >= 0:
                x.wscale = wscale
            self.scaling = x.wscale >= 0 and y.wscale >= 0
            if x.state is _EST and x._ack_in_at != _NONE and not obs.sent_after(ts, from_client, x._ack_in_at):
                return                   # sent before the handshake ACK reached it: already in flight
            self._move(x, event, ts, packet, cause, at)
            if x.state is _SYN_RECEIVED:
                if x._syn_more is not None:            # (a retransmission: two times or more)
                    self._retry(x, x.syn_ts)
                x.cookie_check = ts + _SYNACK_WAIT + 3 * obs.rtt() if x.synacks == 1 else None
        elif event is _SND_SYN:
            if x._isn == _NONE:
                x._isn = _put(seq)
                x.wscale = wscale
            x.syns += 1
            _sent(x, True, ts)
            if x.state is _LISTEN and x.syns == 1 and not x.synacks:
                x.state = x.initial = _CLOSED     # it opens actively: simultaneous open, no listener
            if x.icmp_closed and x.state is _CLOSED and seq == x.isn:
                x.icmp_closed = False
                event = _SND_SYN_AFTER_ICMP        # the same SYN again: the ICMP error had not ended connect()
            self._move(x, event, ts, packet, cause, at)
            if x.state is _SYN_SENT and x._syn_more is not None:
                self._retry(x, x.syn_ts)
        elif cause == "second FIN":
            fin_at = (seq + self._seg_plen + (1 if flags & SYN else 0)) & _M32
            self._violation(Violation(
                ts, x.role, "data_after_fin", packet,
                f"{x.role} sent a second FIN at seq {fin_at}, past its first FIN at {x.fin_seq}"))
        elif event is _SND_FIN:
            if x._fin_seq == _NONE and not y.packets:
                self._infer_unseen_fin(x, y, ts, final=False)
            x.fins += 1
            _sent(x, False, ts)
            first = x._fin_seq == _NONE
            if first:
                x._fin_seq = (seq + self._seg_plen + (1 if flags & SYN else 0)) & _M32
                if not self._move(x, event, ts, packet, cause, at, None, self._fin_alt_since(x, y, from_client)):
                    x._fin_seq = _NONE              # a FIN that fits no state is reported and ignored
                    return
            else:
                if x.fin_acked:
                    # Its ACK was seen, yet it retransmits. Only a copy that left after that ACK arrived
                    # proves the ACK was lost; one already in flight proves nothing.
                    if x._ack_in_at != _NONE and not obs.sent_after(ts, from_client, x._ack_in_at):
                        return
                    x.fin_acked = False
                    x.fin_ack_losses += 1
                self._move(x, event, ts, packet, cause, at)
                if _waiting_for_fin_ack(x.state) and x._fin_more is not None:
                    self._retry(x, x.fin_ts)
            if not y.packets and _waiting_for_fin_ack(x.state):
                x.fin_check = ts + _RTO_WAIT + 3 * obs.rtt()     # re-armed by each copy
            # the peer's receipt of this FIN is pending until its ACK is seen (or settled without it)
            if not y.acked_peer_fin and y.state is not _CLOSED:
                if y._rx_fin_first == _NONE:
                    y._rx_fin_first, y.rx_fin_copies = _put(ts), 0
                    y._rx_fin_packet = _NONE if packet is None else _held(packet)
                y._rx_fin_last = _put(ts)
                y.rx_fin_copies += 1
                y.rx_fin_contra = False              # a new copy: a new chance to arrive
        elif event is _RCV_ACK_OF_SYN:
            y.syn_acked = True
            if flags & SYN and y.state is _SYN_RECEIVED:
                y.synack_unconfirmed = True     # simultaneous open: wait for y's own ACK as evidence
            else:
                y._ack_in_at = _NONE if at is None else _held(at)
                self._move(y, event, ts, packet, cause, at)
        elif event is _RCV_ACK_OF_FIN:
            y.fin_acked = True
            y._ack_in_at = _NONE if at is None else _held(at)
            # On a path that already lost an ACK of this FIN, an ACK not followed by another retransmission
            # either arrived or the sender gave up retrying: the packets cannot tell which.
            self._move(y, event, ts, packet, cause, at, y.state if y.fin_ack_losses else None)
        elif event is _INFER_SYNCED:
            if ep is x:
                x.syn_acked = True
            else:
                y.acked_peer_syn = True
            self._move(ep, event, ts, packet, cause, at)

    @cython.cfunc
    @cython.locals(obs=Observer, tr=Transition, ep=Endpoint, at=i64, floor_c=i64, floor_s=i64, client=cython.bint)
    def _restamp_handshake(self) -> None:
        """The handshake ACK has just given the observer its delays. The SYN and SYN+ACK moves before it were
        stamped with the delays then known (none): stamp them again, when the segment left its sender by the
        model (a SYN_SENT begins one client->tap delay before the tap sees the SYN). Never before the
        endpoint's previous move; its current state's start follows."""
        obs = self.obs
        floor_c = floor_s = _NONE
        for tr in self.transitions:
            client = tr._server == 0
            if tr._packet != _NO_PACKET and (tr.cause == "SYN" or tr.cause == "SYN+ACK"):
                at = obs.departure(tr.ts, client)
                if at < (floor_c if client else floor_s):
                    at = floor_c if client else floor_s
                if at < tr.at:
                    ep = self.client if client else self.server
                    if ep.since == tr.at and ep.state is tr.new:
                        ep.since = at
                    tr.at = at
            if client:
                floor_c = tr.at
            else:
                floor_s = tr.at

    @cython.cfunc
    @cython.locals(x=Endpoint, y=Endpoint, from_client=cython.bint, xs=_Stall, ys=_Stall)
    def _fin_alt_since(self, x: Endpoint, y: Endpoint, from_client: bool):
        """Rule 5: from when X may already have sent the FIN being fed (its first seen), or None."""
        if self._seg_hidden != _NONE:             # unseen packets since X's previous one: earlier copies?
            return self._seg_hidden
        ys, xs = y._stall, x._stall
        if self._seg_plen and ys is not None and ys.zw_end != _NONE \
                and (xs is None or xs.pause_end == _NONE or xs.pause_end <= ys.zw_end + _PAUSE):
            return self.obs.arrival(ys.zw_start, from_client)     # queued behind data since the stall
        return None

    @cython.cfunc
    @cython.locals(x=Endpoint, y=Endpoint, ts=i64, flags=i64, seq=i64, ack=i64, from_client=cython.bint)
    def _rst(self, x: Endpoint, y: Endpoint, ts: int, packet: int, flags: int, seq: int, ack: int) -> None:
        if y.state is _SYN_SENT and not y.packets and x.state is _SYN_RECEIVED and x._isn != _NONE \
                and seq == (x._isn + 1) & _M32 and not flags & ACK:
            # A peer never seen, answered with a RST that follows X's SYN+ACK: a RST without ACK takes its
            # sequence number from the segment it answers, so Y had acknowledged the SYN+ACK (the handshake
            # ACK, refused: an accept queue overflowing with tcp_abort_on_overflow=1).
            y.acked_peer_syn = True
            self._move(y, _INFER_SYNCED, ts, packet, "inferred:the RST answers its handshake ACK",
                       self.obs.arrival(x.syn_ts[-1], y is self.client))
        if y.state is _SYN_SENT:
            plausible = bool(flags & ACK) and y._isn != _NONE and ack == (y._isn + 1) & _M32
            why = "it does not acknowledge the SYN"
        else:
            lo = y.ack_sent if y.ack_sent is not None else x.snd_nxt
            if lo is None:
                plausible, why = True, ""
            else:
                if x.snd_nxt is not None and seq_gt(lo, x.snd_nxt):
                    lo = x.snd_nxt                   # Y's ACK may not have caught up with what X sent
                hi = lo
                if x.snd_nxt is not None and seq_gt(x.snd_nxt, hi):
                    hi = x.snd_nxt
                window = max(y.win, 1)
                plausible = seq_ge(seq, lo) and seq_gt((hi + window) & _M32, seq)
                why = f"seq {seq} is outside {y.role}'s window [{lo}, {(hi + window) & _M32})"
        if not plausible:
            self._violation(Violation(ts, x.role, "out_of_window_rst", packet,
                                             f"RST from {x.role} ignored: {why}"))
            return
        if self.rst_by is None and x.state is not _CLOSED:
            self.rst_by, self.rst_state, self.rst_ts, self.rst_packet = x.role, x.state, ts, packet
        from_client = x is self.client
        self._move(x, _SND_RST, ts, packet, "RST sent", self.obs.departure(ts, from_client))
        self._move(y, _RCV_RST, ts, packet, "RST", self.obs.arrival(ts, not from_client))

    @cython.locals(ts=i64, to_client=cython.bint, seq=i64, ep=Endpoint)
    def icmp_error(self, ts: int, packet: int, to_client: bool, seq: int, cause: str) -> bool:
        """An ICMP error seen at `ts` (record `packet`) quoting a segment the client (`to_client`) or the
        server sent, with sequence number `seq`, on its way back to that endpoint. It ends a SYN_SENT whose
        SYN it quotes (Linux checks snd_una <= seq < snd_nxt, i.e. the ISN) when it arrives; `cause` names
        the error. Only errors Linux turns into an errno may be given (not fragmentation needed / packet
        too big). True when it ended the connect."""
        ep = self.client if to_client else self.server
        self.expire(ts)
        if ep.state is not _SYN_SENT or ep.isn is None or seq != ep.isn:
            return False
        self._seg_role = None
        if self._move(ep, _RCV_ICMP_ERROR, ts, packet, cause, self.obs.arrival(ts, to_client)):
            ep.icmp_closed = True
            ep.deadline = ep.retry_deadline = None
            return True
        return False

    @cython.locals(ts=i64, to_client=cython.bint)
    def reuse(self, ts: int, packet: int, to_client: bool) -> Endpoint | None:
        """A new SYN with another ISN on this 4-tuple is starting a new connection: an endpoint still in
        TIME_WAIT accepts it and its TIME_WAIT ends (returned, for the time_wait_reuse finding)."""
        tw = next((e for e in (self.client, self.server) if e.state is _TIME_WAIT), None)
        if tw is not None:
            self._seg_role = None
            self._move(tw, _REUSED, ts, packet, "reused:new SYN on the 4-tuple",
                       self.obs.arrival(ts, tw is self.client))
            tw.deadline = None
        return tw


# -- a batch's segments through their connections' machines (track's vectorized path) -----------------------
# Here, not in tcpfsm/track/_runs.py, because here the calls into a Connection are C calls: from another
# module each one boxed its integers and went through Python (about a fifth of the walk's instructions).
_RC_PACKET = cython.declare(i64, 1)
_RC_WSCALE = cython.declare(i64, 8)
_CONTROL = cython.declare(i64, 0x07)     # SYN, FIN or RST: a segment that may change a state




@cython.final
@cython.cclass
class TimerHeap:
    """The flow table's timers: (due, flow) entries, the earliest due first and, at one due time, the first
    pushed first; a flow is held by a weak reference (a forgotten flow's entry is dropped when it is
    popped), and stale entries are allowed (`fire_timers` checks a popped flow's deadline). A binary heap
    over two int64 columns (due, push number) beside a list of the references: no tuple per entry and no
    tuple comparisons (heapq over (due, tie-break, reference) tuples was 3 % of a run's instructions)."""

    _due = cython.declare(cython.longlong[::1])
    _seq = cython.declare(cython.longlong[::1])
    _refs = cython.declare(list)
    _n = cython.declare(i64)
    _cap = cython.declare(i64)
    _pushed = cython.declare(i64)

    def __init__(self):
        self._pushed = 0
        self.clear()

    def __len__(self) -> int:
        return self._n

    def clear(self) -> None:
        self._cap = 64
        self._due = np.empty(self._cap, np.int64)
        self._seq = np.empty(self._cap, np.int64)
        self._refs = [None] * self._cap
        self._n = 0

    @cython.ccall
    @cython.returns(i64)
    def top(self) -> int:
        """The earliest due time (the heap must not be empty)."""
        return self._due[0]

    @cython.ccall
    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(due=i64, i=i64, up=i64, seq=i64)
    def push(self, due: int, ref) -> None:
        """Add `ref`'s entry, due at `due`."""
        if self._n == self._cap:
            self._cap *= 2
            self._due = np.concatenate([np.asarray(self._due), np.empty(self._cap - self._n, np.int64)])
            self._seq = np.concatenate([np.asarray(self._seq), np.empty(self._cap - self._n, np.int64)])
            self._refs.extend([None] * (self._cap - self._n))
        seq = self._pushed
        self._pushed += 1
        i = self._n
        self._n += 1
        while i > 0:                        # sift up (bounded: the heap's height)
            up = (i - 1) >> 1
            if self._due[up] < due or (self._due[up] == due and self._seq[up] < seq):
                break
            self._due[i] = self._due[up]
            self._seq[i] = self._seq[up]
            self._refs[i] = self._refs[up]
            i = up
        self._due[i] = due
        self._seq[i] = seq
        self._refs[i] = ref

    @cython.ccall
    @cython.locals(n=i64, refs=list)
    def pop(self):
        """Remove the earliest entry (the heap must not be empty); its reference."""
        refs = self._refs
        out = refs[0]
        self._n -= 1
        n = self._n
        if n:
            self._due[0] = self._due[n]
            self._seq[0] = self._seq[n]
            refs[0] = refs[n]
        refs[n] = None
        self._sift_down(0)
        return out

    @cython.cfunc
    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(i=i64, n=i64, c=i64, due=i64, seq=i64, refs=list)
    def _sift_down(self, i: int) -> None:
        """Move entry i down to its place (its children's subtrees are heaps)."""
        n = self._n
        if i >= n:
            return
        refs = self._refs
        due = self._due[i]
        seq = self._seq[i]
        ref = refs[i]
        while True:                         # (bounded: the heap's height)
            c = 2 * i + 1
            if c >= n:
                break
            if c + 1 < n and (self._due[c + 1] < self._due[c]
                              or (self._due[c + 1] == self._due[c] and self._seq[c + 1] < self._seq[c])):
                c += 1
            if due < self._due[c] or (due == self._due[c] and seq < self._seq[c]):
                break
            self._due[i] = self._due[c]
            self._seq[i] = self._seq[c]
            refs[i] = refs[c]
            i = c
        self._due[i] = due
        self._seq[i] = seq
        refs[i] = ref

    @cython.locals(k=i64, j=i64, refs=list)
    def keep_if(self, keep) -> None:
        """Hold only the entries whose reference `keep(ref)` accepts (called once an entry); what is kept
        pops in the same order as before (the order is the entries' (due, push number), not their places)."""
        refs = self._refs
        j = 0
        for k in range(self._n):            # (bounded: the entries)
            ref = refs[k]
            if keep(ref):
                self._due[j] = self._due[k]
                self._seq[j] = self._seq[k]
                refs[j] = ref
                j += 1
        for k in range(j, self._n):
            refs[k] = None
        self._n = j
        for k in range(j // 2 - 1, -1, -1):     # Floyd's heap construction, bottom up
            self._sift_down(k)


@cython.boundscheck(False)
@cython.wraparound(False)
@cython.ccall
@cython.annotation_typing(True)
@cython.locals(n=i64, p=i64, r=i64)
def gather_rows(rows: cython.longlong[:, ::1], perm: cython.const[cython.longlong][::1],
                clock: cython.const[cython.longlong][::1], packet: cython.const[cython.longlong][::1],
                lo: cython.const[cython.uchar][::1], flags: cython.const[cython.ushort][::1],
                seq: cython.const[cython.uint][::1], ack: cython.const[cython.uint][::1],
                win: cython.const[cython.ushort][::1], plen: cython.const[cython.uint][::1],
                wscale: cython.const[cython.schar][::1], ip_len: cython.const[cython.uint][::1],
                ipid: cython.const[cython.ushort][::1]) -> None:
    """The segment table `walk_groups` reads, in ROW_COLUMNS: row p is batch row perm[p], from the batch's
    columns in their own types (tcpfsm/capture/batch.py; `lo` as uint8). (numpy's gather and cast, column
    by column, took three times as long.)"""
    n = perm.shape[0]
    for p in range(n):
        r = perm[p]
        rows[p, _RC_CLOCK] = clock[r]
        rows[p, _RC_PACKET] = packet[r]
        rows[p, _RC_LO] = lo[r]
        rows[p, _RC_FLAGS] = flags[r]
        rows[p, _RC_SEQ] = seq[r]
        rows[p, _RC_ACK] = ack[r]
        rows[p, _RC_WIN] = win[r]
        rows[p, _RC_PLEN] = plen[r]
        rows[p, _RC_WSCALE] = wscale[r]
        rows[p, _RC_IPLEN] = ip_len[r]
        rows[p, _RC_IPID] = ipid[r]

@cython.boundscheck(False)
@cython.wraparound(False)
@cython.ccall
@cython.annotation_typing(True)          # (the one way to type a memoryview argument here)
@cython.locals(G=i64, gi=i64, p=i64, e=i64, q=i64, flags=i64, clock=i64, conn=Connection)
def walk_groups(rows: cython.const[cython.longlong][:, ::1], bounds: cython.const[cython.longlong][::1],
                perm: cython.const[cython.longlong][::1], flows: list, decide, touched: set, timers: TimerHeap,
                current: dict, held: type) -> None:
    """Feed a batch's segments to their connections. `rows`: the segments in ROW_COLUMNS, group by group --
    group g's rows are [bounds[g], bounds[g + 1]), in time order; `perm[p]`: row p's place in the batch.
    `flows[g]`: group g's connection when the batch starts (a Flow, or None; or a record of type `held` the
    table made of it -- tcpfsm/track/_runs.py Attempt -- put in `current` under its `key` at its turn, so
    the table's order is the groups', and not walked).

    Per group, in time order: plain segments (no SYN, FIN or RST) of a steady connection go to
    `feed_plain_rows`, the rest one by one: the connection's timers fire up to the segment's time, and then
    `decide(g, row, clock, packet, lo, flags, seq, flow)` is asked which connection it belongs to when it may
    start one (no connection yet, a SYN that does not continue this one, or a finished connection): a Flow,
    or None to drop the segment. The segment goes to `feed`; its flow is stamped (`last_ts`), added to
    `touched`, and when it is not steady its next deadline is pushed on the `timers` heap (a weak
    reference to the flow) if it moved. (What tcpfsm/track/flowtable.py FlowTable._feed_rows does for
    one segment at a time: the tests hold them equal.)"""
    G = bounds.shape[0] - 1
    if not cython.compiled:              # (Python ints, as the compiled form reads C integers)
        rows, bounds, perm = memoryview(rows), memoryview(bounds), memoryview(perm)
    for gi in range(G):
        p = bounds[gi]
        e = bounds[gi + 1]
        flow = flows[gi]
        if type(flow) is held:               # a lone SYN the table holds as a record: tracked, not fed
            current[flow.key] = flow
            continue
        while p < e:
            flags = rows[p, _RC_FLAGS]
            clock = rows[p, _RC_CLOCK]
            if flow is not None:
                conn = flow.conn
                if not flags & _CONTROL and conn.steady:
                    q = conn.feed_plain_rows(rows, p, e, flow.client_is_lo)
                    flow.last_ts = rows[q - 1, _RC_CLOCK]
                    p = q
                    continue
                conn.expire(clock)
                if flags & SYN:         # (the machine knows its own handshake; a new ISN is the table's call)
                    nf = flow if conn.continues((rows[p, _RC_LO] != 0) == flow.client_is_lo, flags, rows[p, _RC_SEQ]) \
                        else decide(gi, perm[p], clock, rows[p, _RC_PACKET], rows[p, _RC_LO] != 0, flags,
                                    rows[p, _RC_SEQ], flow)
                elif not conn.steady and conn.finished():                 # (steady: both ESTABLISHED)
                    nf = decide(gi, perm[p], clock, rows[p, _RC_PACKET], rows[p, _RC_LO] != 0, flags,
                                rows[p, _RC_SEQ], flow)
                else:
                    nf = flow
            else:
                nf = decide(gi, perm[p], clock, rows[p, _RC_PACKET], rows[p, _RC_LO] != 0, flags, rows[p, _RC_SEQ],
                            None)
            if nf is None:                   # dropped (a late segment of an evicted connection)
                p += 1
                continue
            flow = nf
            conn = flow.conn
            conn.feed(clock, rows[p, _RC_PACKET], (rows[p, _RC_LO] != 0) == flow.client_is_lo, flags, rows[p, _RC_SEQ],
                      rows[p, _RC_ACK], rows[p, _RC_WIN], rows[p, _RC_PLEN], rows[p, _RC_WSCALE], rows[p, _RC_IPLEN],
                      rows[p, _RC_IPID])
            flow.last_ts = clock
            touched.add(flow)
            if not conn.steady:
                due = conn.next_deadline()
                if due is not None and due != flow.timer_due:     # one heap entry per change, not per packet
                    flow.timer_due = due
                    timers.push(due, _weakref(flow))
            p += 1


@cython.ccall
@cython.locals(now=i64, n=i64, conn=Connection, heap=TimerHeap)
def fire_timers(heap: TimerHeap, now: int, touched: set) -> None:
    """Fire every connection timer due by `now` off the table's heap (FlowTable.advance): a forgotten flow's
    entry is dropped, a stale one (the timer was cancelled or moved) corrected, a due one fired
    (`Connection.expire`) -- the flow is added to `touched` if that changed a state -- and its next deadline
    pushed."""
    while len(heap) and heap.top() <= now:
        ref = heap.pop()
        flow = ref()
        if flow is None:
            continue                               # forgotten (streamed out) meanwhile
        conn = flow.conn
        due = conn.next_deadline()
        if due is None:
            flow.timer_due = None                  # stale entry: the timer was cancelled
            continue
        if due > now:
            if due != flow.timer_due:               # stale entry: the timer moved
                flow.timer_due = due
                heap.push(due, ref)
            continue
        n = len(conn.transitions)
        conn.expire(now)
        if len(conn.transitions) != n:
            touched.add(flow)
        due = conn.next_deadline()
        flow.timer_due = due
        if due is not None:
            heap.push(due, ref)


@cython.ccall
def settle_all(flows: list, end: int, touched: set) -> None:
    """Fire every timer of every flow due by `end` (`Connection.settle`); the flows whose states changed
    are added to `touched` (FlowTable.finish)."""
    for flow in flows:
        _settle(flow, end, touched)


@cython.cfunc
@cython.locals(n=i64, conn=Connection)
def _settle(flow, end, touched: set) -> None:
    """`Connection.settle` of one flow at `end`; the flow goes to `touched` if a state changed."""
    conn = flow.conn
    n = len(conn.transitions)
    conn.settle(end)
    if len(conn.transitions) != n:
        touched.add(flow)


@cython.ccall
@cython.locals(conn=Connection, t=Transition, mask=i64, want=i64, got=i64, k=i64, trs=list)
def entered_sides(conn, mask: int, want: int) -> int:
    """Which of the endpoints in `want` (bit 0 the client, bit 1 the server) made a transition into a state
    whose position in `State` is a bit of `mask`, other than by a midstream pick-up (cause
    "inferred:midstream..."), as those bits: what Zeek's coarse ESTABLISHED asks of a connection
    (tcpfsm/detect/zeek.py). From the transitions' C fields, first to last, stopping once `want` is met."""
    got = 0
    trs = conn.transitions
    for k in range(len(trs)):           # (bounded: the connection's transitions)
        t = trs[k]
        if (mask >> t._new) & 1 and not t.cause.startswith("inferred:midstream"):
            got |= 2 if t._server else 1
            if got & want == want:
                break
    return got & want


@cython.ccall
@cython.locals(conn=Connection, k=i64, n=i64)
def end_states(flows: list) -> tuple:
    """What a summary counts of its flows: each side's state at the end, as ({State: flows} for the clients,
    the same for the servers), and the transitions that are not RFC 9293 edges (`Connection.non_rfc`)."""
    counts = [0] * (2 * _NSTATES)
    n = 0
    for f in flows:
        conn = f.conn
        counts[_state_code(conn.client.state)] += 1
        counts[_NSTATES + _state_code(conn.server.state)] += 1
        n += conn.non_rfc()
    return ({_STATES[k]: counts[k] for k in range(_NSTATES) if counts[k]},
            {_STATES[k]: counts[_NSTATES + k] for k in range(_NSTATES) if counts[_NSTATES + k]}, n)


@cython.ccall
@cython.boundscheck(False)
@cython.wraparound(False)
@cython.annotation_typing(True)
@cython.locals(n=i64, i=i64, fid2=i64, tr=Transition)
def transition_columns(items: list, ts: cython.longlong[::1], endpoint: cython.longlong[::1],
                       new: cython.longlong[::1]) -> None:
    """Of each (flow, transition) pair (a flow's pairs together, as FlowTable.drain hands them; a transition
    may be a record standing in for one, with `ts`, `endpoint` and `new`: track's Attempt): its time, its
    endpoint as `flow id * 2 + (endpoint is the server)`, and the position in `State` of the state it entered.
    What the state piles sort and count by (tcpfsm/detect/piles.py `ordered`), read from the C fields."""
    n = len(items)
    prev = None
    fid2 = 0
    for i in range(n):      # (bounded: one turn a pair)
        f, t = items[i]
        if f is not prev:
            prev = f
            fid2 = f.id * 2
        if type(t) is Transition:
            tr = t
            ts[i] = tr.ts
            endpoint[i] = fid2 + (1 if tr._server else 0)
            new[i] = tr._new
        else:
            ts[i] = t.ts
            endpoint[i] = fid2 + (0 if t.endpoint == "client" else 1)
            new[i] = _state_code(t.new)
