"""The real Linux kernel as the oracle: `netstat --at T` must equal `ss -tan` at every snapshot.

captures/record.py drove real sockets between two network namespaces, captured
on the client's veth, and took `ss -tanH` in both namespaces at quiet moments
(no packet within ±300 ms, no kernel timer within 2 s). Tolerance: none on the
set of sockets and their states. The quiet margins are what make that fair:
the capture point sits on the client's side of the wire, so the observer sees
a packet microseconds before (or after) the kernel acts on it, and Linux
delays the ACK of a FIN by ~40 ms, which is when our model moves the FIN's
receiver. LISTEN rows are left out on both sides: a listener exists before
any packet, and we only list it from the first SYN it answered.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import tcpfsm
from tcpfsm.fsm.states import FROM_SS

KERNEL = Path(__file__).resolve().parent.parent / "captures" / "kernel"
TRUTHS = sorted(KERNEL.glob("*.truth.json"))

_cache: dict = {}


def analysis(truth: Path):
    if truth not in _cache:
        _cache[truth] = tcpfsm.analyze(str(truth.with_name(truth.name.replace(".truth.json", ".pcap"))))
    return _cache[truth]


def kernel_rows(snap: dict, host: str) -> set[tuple[str, str, str]]:
    return {(s["local"], s["remote"], FROM_SS[s["state"]].value)
            for s in snap["sockets"] if s["host"] == host and s["state"] != "LISTEN"}


def our_rows(an, t: float, host: str, want: set) -> set[tuple[str, str, str]]:
    """Our rows, each as the kernel's row where the kernel shows its `alt` (the state the packets could
    not rule out); a row whose likely state is CLOSED (listed only for its alt) counts as absent."""
    kernel = {(lo, re): st for lo, re, st in want}
    out = set()
    for r in an.netstat(t, host=host, listening=False).sockets:
        state = r.state.value
        if r.alt is not None and kernel.get((r.local, r.remote), "CLOSED") == r.alt.value:
            state = r.alt.value
        if state != "CLOSED":
            out.add((r.local, r.remote, state))
    return out


def cases():
    for truth in TRUTHS:
        data = json.loads(truth.read_text())
        for i, snap in enumerate(data["snapshots"]):
            yield pytest.param(truth, i, id=f"{data['scenario']}-{i}-{snap.get('label', '')[:40]}")


def test_every_scenario_has_snapshots():
    assert len(TRUTHS) >= 14, [t.name for t in TRUTHS]
    for truth in TRUTHS:
        assert json.loads(truth.read_text())["snapshots"], truth.name


@pytest.mark.parametrize("truth,i", list(cases()))
def test_netstat_equals_ss(truth, i):
    data = json.loads(truth.read_text())
    snap = data["snapshots"][i]
    an = analysis(truth)
    for host in sorted(set(data["hosts"].values())):
        want = kernel_rows(snap, host)
        got = our_rows(an, snap["t"], host, want)
        assert got == want, (f"{data['scenario']} '{snap.get('label')}' on {host}: "
                             f"missing {sorted(want - got)}, extra {sorted(got - want)}")


def test_every_state_of_the_model_was_shown_by_the_kernel():
    seen = set()
    for truth in TRUTHS:
        for snap in json.loads(truth.read_text())["snapshots"]:
            seen |= {s["state"] for s in snap["sockets"]}
    want = {"SYN-SENT", "SYN-RECV", "ESTAB", "FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT", "CLOSING", "LAST-ACK",
            "TIME-WAIT", "LISTEN"}
    assert want <= seen, sorted(want - seen)
