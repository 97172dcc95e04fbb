"""The sans-I/O TCP state machines (RFC 9293) of both endpoints of a connection.

Everything that decides a state change lives in this package: the state and
event vocabulary (`states`), the transition table with a reason per entry
(`table`), timer profiles (`profiles`) and the per-connection machine that
classifies each segment into endpoint events (`machine`), with the observer
model (`machine.Observer`): where the capture point stands and when a segment seen
there reached, or left, each endpoint. Nothing here reads
files, sockets or clocks: callers feed segments and times, and get back
`Transition` records.
"""
from .states import State, Event, NETSTAT_NAME, SS_NAME
from .table import TABLE, TIMEOUTS, is_rfc_edge, rfc_graph
from .profiles import TimerProfile, PROFILES, get_profile
from .. import _kernels

# machine (the observer model with it) is a compiled kernel (tcpfsm/_kernels.py decides which form runs):
# everything outside this package takes its classes from here, so one process never mixes the two forms.
_machine = _kernels.load("tcpfsm.fsm.machine")
Connection, Endpoint, Transition, Violation = (_machine.Connection, _machine.Endpoint, _machine.Transition,
                                               _machine.Violation)
Observer = _machine.Observer
CAPTURE_POINTS = _machine.CAPTURE_POINTS
ROW_COLUMNS = _machine.ROW_COLUMNS     # the segment table of Connection.feed_plain_rows and walk_groups
walk_groups = _machine.walk_groups     # a batch's segments through their connections (track's vectorized path)
gather_rows = _machine.gather_rows     # ... and the segment table it reads
fire_timers, settle_all = _machine.fire_timers, _machine.settle_all   # the table's timers, and at the end
TimerHeap = _machine.TimerHeap         # ... which it keeps in this heap
end_states = _machine.end_states       # what a summary counts of its flows' states
transition_columns = _machine.transition_columns   # what the state piles sort and count transitions by
entered_sides = _machine.entered_sides   # which endpoints entered given states (Zeek's coarse ESTABLISHED)
TRANSITION_ROW = _machine.TRANSITION_ROW   # int64s per transition of Connection.transition_rows

__all__ = [
    "State", "Event", "NETSTAT_NAME", "SS_NAME", "TABLE", "TIMEOUTS", "is_rfc_edge", "rfc_graph",
    "TimerProfile", "PROFILES", "get_profile", "Connection", "Endpoint", "Transition", "Violation",
    "CAPTURE_POINTS", "Observer", "ROW_COLUMNS", "TRANSITION_ROW", "walk_groups", "gather_rows",
    "fire_timers", "settle_all", "end_states", "transition_columns", "entered_sides", "TimerHeap",
]


def __getattr__(name: str):
    if name == "RFC_GRAPH":
        from . import table
        return table.RFC_GRAPH
    raise AttributeError(name)
