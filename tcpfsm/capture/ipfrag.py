"""IP fragment reassembly for TCP: hold the fragments of a datagram until they are all there, then hand
back the payload whole.

Owns: the fragment store of one capture (`Reassembler`), its memory bound and its counts. Must not:
parse headers (the decoders find the key, offset and payload of a fragment, and rebuild the packet from
the payload this returns), or decide anything about the segment inside.

Rules (Linux's and Wireshark's outcome for well-formed traffic): a datagram is complete when its pieces
cover 0..end without a gap and the piece at `end` is the one without "more fragments"; the row is the
packet at the record that completed it (tshark shows the reassembled TCP segment at that frame too). A
piece that repeats or overlaps data already held is dropped (RFC 5722's rule for IPv6; Linux drops
overlapping IPv4 fragments too). At most MAX_DATAGRAMS datagrams and MAX_BYTES payload bytes are held;
beyond that the oldest datagram is dropped whole. `held` counts fragments given up on (evicted, or never
completed when the capture ends): the readers report them as notes["ip_fragments_unreassembled"].
"""
from __future__ import annotations

from collections import OrderedDict

__all__ = ["Reassembler"]

MAX_DATAGRAMS = 4096
MAX_BYTES = 16 << 20


class Reassembler:
    __slots__ = ("_dgrams", "_bytes", "evicted", "reassembled")

    def __init__(self) -> None:
        self._dgrams: OrderedDict = OrderedDict()        # key -> [pieces {offset: bytes}, end or None, first header or None]
        self._bytes = 0
        self.evicted = 0               # fragments dropped by the memory bound
        self.reassembled = 0           # datagrams completed

    def add(self, key, offset: int, more: bool, payload: bytes, header: bytes | None):
        """One fragment: `offset` in bytes, `more` = MF, `header` = what precedes the payload in the
        offset-0 fragment (None in the others). Returns (header, whole payload) when this fragment
        completes its datagram, else None (the fragment is held)."""
        d = self._dgrams.get(key)
        if d is None:
            while self._dgrams and (len(self._dgrams) >= MAX_DATAGRAMS or self._bytes + len(payload) > MAX_BYTES):
                self._evict()
            d = self._dgrams[key] = [{}, None, None]
        pieces = d[0]
        end = offset + len(payload)
        for o, p in pieces.items():      # a repeat or an overlap: dropped
            if o < end and offset < o + len(p):
                return None
        if not more:
            if d[1] is not None and d[1] != end:
                return None
            d[1] = end
        pieces[offset] = bytes(payload)
        self._bytes += len(payload)
        if offset == 0:
            d[2] = bytes(header or b"")
        if d[1] is None or d[2] is None:
            return None
        pos = 0
        for o in sorted(pieces):
            if o != pos:
                return None
            pos += len(pieces[o])
        if pos != d[1]:
            return None
        del self._dgrams[key]
        self._bytes -= pos
        self.reassembled += 1
        return d[2], b"".join(pieces[o] for o in sorted(pieces))

    def _evict(self) -> None:
        pieces = self._dgrams.popitem(last=False)[1][0]
        self.evicted += len(pieces)
        self._bytes -= sum(len(p) for p in pieces.values())

    def held(self) -> int:
        """Fragments given up on: evicted so far plus those still waiting (call at the end)."""
        return self.evicted + sum(len(d[0]) for d in self._dgrams.values())
