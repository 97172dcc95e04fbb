"""ICMP that explains TCP (issue 8 part 4): the capture's ICMP errors quoting TCP tied to their connections.

Owns: feeding the tracker the errors that end a SYN_SENT (`IcmpFeed`: between the segments around them, so
the machine sees them in capture order; the machine and its table decide, tcpfsm/fsm), and, once the
states are done, each flow's errors (`IcmpFacts`: the `icmp` list of the flow's `path` record) and the
counts per sending router. An error belongs to the connection of its quoted 4-tuple that started last at or
before the error (as path/flows.py ties conversations). Must not: decode packets (capture/icmp.py) or
decide states.
"""
from __future__ import annotations

import bisect
from collections import Counter

import numpy as np

from ..capture.batch import Batch
from ..capture.icmp import aborts_connect, error_name, linux_errno
from ..capture.keys import flow_key_array
from ..track.flowtable import ip_text
from .flows import flow_key

NS = 1_000_000_000


def _keys(cols: dict) -> tuple[list[bytes], list[bool]]:
    """Flow keys of the quoted 4-tuples, and whether the quoted packet's sender is the key's lower side."""
    karr, lo = flow_key_array({"src": cols["q_src"], "dst": cols["q_dst"], "sport": cols["q_sport"],
                               "dport": cols["q_dport"]})
    return karr.tolist(), lo.tolist()


class IcmpFeed:
    """Hands the tracker the ICMP errors a decoder has put in its side table (`cap.icmp`), in capture order
    between the TCP segments: `feed(batch)` yields the parts of a batch to feed, handing over the errors that
    fall between them; `flush()` hands over the rest at the end."""

    def __init__(self, errors, table):
        self.errors = errors          # capture.icmp.IcmpErrors, filled while the capture is read
        self.table = table
        self.done = 0
        self.ended = 0                # SYN_SENT ended by an error

    def _hand(self, upto: int) -> None:
        """Hand over the errors not handed yet whose record number is below `upto`."""
        rows = self.errors.rows
        while self.done < len(rows) and rows[self.done][0] < upto:
            r = rows[self.done]
            self.done += 1
            index, ts, fam, typ, code = r[0], r[1], r[2], r[5], r[6]
            if not aborts_connect(fam, typ, code):
                continue
            cols = {"q_src": np.frombuffer(r[8], "V16"), "q_dst": np.frombuffer(r[9], "V16"),
                    "q_sport": np.array([r[10]], np.uint16), "q_dport": np.array([r[11]], np.uint16)}
            keys, lo = _keys(cols)
            cause = f"icmp:{error_name(fam, typ, code)} from {ip_text(r[3])}"
            flow = self.table.icmp_error(keys[0], lo[0], ts, index, r[12], cause)
            if flow is not None and flow.conn.transitions and flow.conn.transitions[-1].packet == index:
                self.ended += 1

    def feed(self, batch: Batch):
        """The parts of `batch` to feed the tracker, in order; the errors between them are handed over as the
        parts are taken. Without pending errors in its range, the batch itself."""
        rows = self.errors.rows
        idx = batch.cols["index"]
        if not len(idx) or self.done >= len(rows) or rows[self.done][0] > int(idx[-1]):
            yield batch
            return
        n = len(idx)
        start = 0
        while start < n:
            self._hand(int(idx[start]))                       # the errors before this segment
            nxt = rows[self.done][0] if self.done < len(rows) else None
            cut = n if nxt is None else max(int(np.searchsorted(idx, nxt)), start + 1)
            yield batch if start == 0 and cut == n else Batch({k: v[start:cut] for k, v in batch.cols.items()})
            start = cut

    def flush(self) -> None:
        self._hand(1 << 62)


class IcmpFacts:
    """Every ICMP error quoting TCP, tied to its flow (row of `flows`, -1 when none), with per-flow lists."""

    def __init__(self, errors, flows: list):
        cols = errors.columns()
        self.cols = cols
        self.dropped = errors.dropped
        n = len(cols["index"])
        self.flow_row = np.full(n, -1, np.int64)
        self.per_flow: dict[int, list[int]] = {}
        if n:                                   # (no error: nothing to tie, and no key per flow to build)
            by_key: dict[bytes, list[tuple[int, int]]] = {}
            for row, f in enumerate(flows):
                by_key.setdefault(flow_key(f), []).append((f.first_packet, row))
            for lst in by_key.values():
                lst.sort()
            keys, _ = _keys(cols)
            for i, (k, index) in enumerate(zip(keys, cols["index"].tolist())):
                lst = by_key.get(k)
                if lst:
                    j = bisect.bisect_right(lst, (index, 1 << 62)) - 1
                    if j >= 0:
                        self.flow_row[i] = lst[j][1]
                        self.per_flow.setdefault(lst[j][1], []).append(i)
        self.flows = flows

    def __len__(self) -> int:
        return len(self.cols["index"])

    def record(self, i: int) -> dict:
        """One error as the `icmp` list of a flow's path record shows it."""
        c = self.cols
        fam, typ, code = int(c["family"][i]), int(c["type"][i]), int(c["code"][i])
        return {"packet": int(c["index"][i]), "ts": round(int(c["ts"][i]) / NS, 6),
                "type": typ, "code": code, "name": error_name(fam, typ, code),
                "router": ip_text(bytes(c["sender"][i])), "ttl": int(c["ttl"][i]),
                "mtu": int(c["mtu"][i]) or None, "errno": linux_errno(fam, typ, code),
                "quoted_seq": int(c["q_seq"][i])}

    def of_flow(self, row: int) -> list[dict]:
        got = self.per_flow.get(row)            # (most flows have none: this runs once per rendered flow)
        return [self.record(i) for i in got] if got else []

    def by_router(self) -> dict[str, Counter]:
        """Sending router -> Counter of error names."""
        out: dict[str, Counter] = {}
        c = self.cols
        for i in range(len(self)):
            r = ip_text(bytes(c["sender"][i]))
            out.setdefault(r, Counter())[error_name(int(c["family"][i]), int(c["type"][i]), int(c["code"][i]))] += 1
        return out
