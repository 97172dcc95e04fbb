"""Flow keys of decoded rows, by the compiled kernel (tcpfsm/capture/_decode.py: flow_keys).

Owns the allocation around the kernel; the meaning of a key (and its use) belongs to tcpfsm.track.
`flow_key_array` returns exactly what tcpfsm.track.flowtable._flow_key_array returns (tests compare
them), so the tracker can call it instead.
"""
from __future__ import annotations

import numpy as np

from .reader import _kernel


def flow_key_array(c: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The flow keys of batch columns `c` (src, dst, sport, dport) as a V36 array (lower side's address
    and big-endian port, then the other side's) and whether each row's source is the lower side (bool)."""
    n = len(c["sport"])
    key = np.empty((n, 36), np.uint8)
    lo = np.empty(n, np.bool_)
    _kernel.flow_keys(np.ascontiguousarray(c["src"]).view(np.uint8).reshape(n, 16),
                      np.ascontiguousarray(c["dst"]).view(np.uint8).reshape(n, 16),
                      np.ascontiguousarray(c["sport"], np.uint16), np.ascontiguousarray(c["dport"], np.uint16),
                      key, lo.view(np.uint8))
    return key.view("V36").ravel(), lo
