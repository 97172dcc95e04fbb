"""Incremental capture decoding for live mode and `analyze --follow`.

`StreamDecoder` takes bytes of a pcap or pcapng stream as they arrive (a pipe from `tcpdump -w -`, a file
still being written) and returns a `Batch` of the records completed by them: a partial record waits for
more bytes. `FrameDecoder.frames()` does the same for raw link-layer frames read from a socket. Both only
locate records; the link/IP/TCP decoding is `capture.reader`'s (the vectorised `_decode`, which falls back
to the scalar `_parse_one`), so live and offline decode identically.
"""
from __future__ import annotations

import inspect
import struct
from collections import Counter

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..capture import reader as _rd
from ..capture import batch as _bt
from ..capture import links as _links
from ..capture.batch import Batch, CaptureError, CaptureInfo

try:                                   # the reader's tunnel table (newer reader): pass it when supported
    _DECODE_TUNNELS = "tunnels" in inspect.signature(_rd._decode).parameters
except (TypeError, ValueError):
    _DECODE_TUNNELS = False

NS = 1_000_000_000


class FrameDecoder:
    """Turns located records into Batches, counting records/segments/skips in `info` like the reader."""

    def __init__(self, name: str = "<live>", info: CaptureInfo | None = None):
        self.info = info or CaptureInfo(path=name)
        self.notes: Counter = Counter()
        self._tunnels = {"": 0}
        self._frags = _rd.Reassembler()        # IP fragments of TCP datagrams, across batches

    def _emit(self, region: bytes, doffs, caps, origs, ts, ifaces, lt_rows, lts) -> Batch | None:
        info = self.info
        n = len(doffs)
        if not n:
            return None
        index = np.arange(info.records + 1, info.records + 1 + n, dtype=np.int64)
        if info.first_ts is None:
            info.first_ts = int(ts[0])
        info.last_ts = int(ts[-1])
        info.records += n
        bufnp = np.frombuffer(region, np.uint8)
        if _DECODE_TUNNELS:
            rows, cols, st, slow_reasons, ff = _rd._decode(bufnp, region, doffs, caps, origs, lt_rows, lts,
                                                           self._tunnels, self._frags)
            tl = getattr(info, "tunnels", None)
            if tl is not None and len(self._tunnels) > len(tl):
                tl[:] = sorted(self._tunnels, key=self._tunnels.__getitem__)[:65536]
        else:
            rows, cols, st, slow_reasons, ff = _rd._decode(bufnp, region, doffs, caps, origs, lt_rows, lts)
        codes = np.bincount(st, minlength=len(_rd.SKIP_REASONS) + 2)
        for reason, code in _rd._CODE.items():
            if codes[code]:
                info.skipped[reason] += int(codes[code])
        info.skipped.update(slow_reasons)
        if ff:
            self.notes["ip_fragment_first_used"] += ff
        _rd.count_jumbograms(self.notes, cols)
        if not len(rows):
            return None
        out = {"index": index[rows], "ts": ts[rows], "iface": ifaces[rows]}
        out.update(cols)
        m = len(rows)
        allc = getattr(_bt, "ALL_COLUMNS", _bt.COLUMNS)
        b = Batch({k: np.ascontiguousarray(out[k]).astype(dt, copy=False) if k in out else np.zeros(m, dt)
                   for k, dt in allc.items()})
        info.tcp_segments += len(b)
        if "csum" in b.cols and hasattr(_bt, "count_checksums"):
            _bt.count_checksums(info, b.cols["csum"])
        return b

    def _live_info(self, linktype: int) -> None:
        if not self.info.linktypes:
            self.info.linktypes = [linktype]
            self.info.ts_resolution = ["ns"]
            self.info.format = "live"

    def located(self, region: bytes, doffs, caps, origs, ts, linktype: int) -> Batch | None:
        """Frames of one link type already laid out in `region` (a packet ring's blocks): each at its offset
        in `doffs`, `caps` bytes of `origs`, stamped `ts` (ns) -> Batch (None if no TCP)."""
        if not len(doffs):
            return None
        self._live_info(linktype)
        return self._emit(region, doffs, caps, origs, ts, np.zeros(len(doffs), np.int64), linktype, (linktype,))

    def frames(self, frames: list[tuple[int, bytes, int]], linktype: int) -> Batch | None:
        """[(ts_ns, captured bytes, original length)] of one link type -> Batch (None if no TCP)."""
        if not frames:
            return None
        self._live_info(linktype)
        datas = [f[1] for f in frames]
        caps = np.fromiter((len(d) for d in datas), np.int64, len(datas))
        doffs = np.zeros(len(datas), np.int64)
        if len(datas) > 1:
            np.cumsum(caps[:-1], out=doffs[1:])
        region = b"".join(datas)
        ts = np.fromiter((f[0] for f in frames), np.int64, len(frames))
        origs = np.fromiter((f[2] for f in frames), np.int64, len(frames))
        return self._emit(region, doffs, caps, origs, ts, np.zeros(len(frames), np.int64), linktype, (linktype,))


class StreamDecoder(FrameDecoder):
    """Incremental pcap / pcapng parser: `feed(bytes) -> [Batch]`.

    Only whole records are decoded; the bytes of an incomplete one stay buffered. `tee`, if given, receives
    exactly the bytes of the complete headers and records (so a copy written there is always a valid capture
    up to its last record). After a corrupt record header `error` is set and further input is ignored."""

    def __init__(self, name: str = "<stream>", info: CaptureInfo | None = None, tee=None):
        super().__init__(name, info)
        self._buf = bytearray()
        self._fmt: str | None = None
        self.tee = tee
        self.error: str | None = None
        self.bytes_in = 0
        # pcap
        self._order = "<"
        self._mult = 1000
        self._lt = 1
        # pcapng (attribute names shared with capture.reader.Capture: its _add_iface is reused)
        self._ifaces: list[tuple] = []
        self._section_base = 0
        self._ng_order = "<"
        self._last_ts = 0

    @property
    def pending(self) -> int:
        """Bytes buffered in an incomplete record."""
        return len(self._buf)

    @property
    def started(self) -> bool:
        return self._fmt is not None

    def feed(self, data: bytes) -> list[Batch]:
        if self.error:
            return []
        if data:
            self._buf += data
            self.bytes_in += len(data)
        out: list[Batch] = []
        while True:
            if self._fmt is None and not self._header():
                return out
            if self._fmt == "pcap":
                b, more = self._pcap_step()
            else:
                b, more = self._ng_step()
            if b is not None:
                out.append(b)
            if not more:
                return out

    def finish(self) -> None:
        """The stream ended: note trailing bytes of a partial record."""
        if self._buf and not self.error:
            self.info.truncated = True
            self.info.warnings.append(f"stream ends in the middle of a {'record' if self._fmt == 'pcap' else 'block'}"
                                      f" ({len(self._buf)} trailing bytes ignored)")
        if self.notes["ip_fragment_first_used"]:
            self.info.warnings.append(f"{self.notes['ip_fragment_first_used']} first IP fragment(s) used without "
                                      "reassembly (their plen covers the first fragment only)")
        _rd.fragment_notes(self._frags, self.notes, self.info.warnings)

    # ---- internals -------------------------------------------------------------------------------
    def _take(self, n: int) -> bytes:
        region = bytes(self._buf[:n])
        del self._buf[:n]
        if self.tee is not None and region:
            self.tee.write(region)
        return region

    def _header(self) -> bool:
        buf = self._buf
        if len(buf) < 4:
            return False
        magic = bytes(buf[:4])
        if magic in _rd._PCAP_MAGIC:
            if len(buf) < 24:
                return False
            order, mult, res = _rd._PCAP_MAGIC[magic]
            network = struct.unpack_from(order + "I", buf, 20)[0]
            self._order, self._mult, self._lt = order, mult, network & 0xFFFF
            self.info.format = "pcap"
            if not self.info.linktypes or self.info.linktypes[-1] != self._lt:   # (a rotated file: same type)
                self.info.linktypes.append(self._lt)
                self.info.ts_resolution.append(res)
            if self._lt not in _rd._SUPPORTED_LT:
                self.info.warnings.append(_links.unsupported_warning(self._lt))
            self._take(24)
            self._fmt = "pcap"
            return True
        if magic == _rd._PCAPNG_SHB:
            self.info.format = "pcapng"
            self._fmt = "pcapng"
            return True
        self.error = f"not a pcap or pcapng stream (magic {magic.hex()})"
        raise CaptureError(f"{self.info.path}: {self.error}")

    def _pcap_step(self):
        buf = self._buf
        end = len(buf)
        incl_at = struct.Struct(self._order + "I").unpack_from
        offs = []
        pos = 0
        while pos + 16 <= end:
            incl = incl_at(buf, pos + 8)[0]
            if incl > _rd._MAX_RECORD:
                self.error = f"corrupt record header after {self.info.records} records"
                self.info.warnings.append(self.error + "; stopped reading")
                break
            npos = pos + 16 + incl
            if npos > end:
                break
            offs.append(pos)
            pos = npos
        if not offs:
            return None, False
        region = self._take(pos)
        bufnp = np.frombuffer(region, np.uint8)
        ro = np.array(offs, np.int64)
        hdr = sliding_window_view(bufnp, 16)[ro].copy().view(self._order + "u4")
        sec, frac = hdr[:, 0].astype(np.int64), hdr[:, 1].astype(np.int64)
        caps, origs = hdr[:, 2].astype(np.int64), hdr[:, 3].astype(np.int64)
        ts = sec * NS + frac * self._mult
        n = len(ro)
        b = self._emit(region, ro + 16, caps, origs, ts, np.zeros(n, np.int64), self._lt, (self._lt,))
        return b, False

    def _ng_step(self):
        """Walk complete blocks. Header blocks (SHB, IDB) are consumed one at a time; a run of packet blocks
        is decoded as one group. Returns (batch or None, call again?)."""
        buf = self._buf
        end = len(buf)
        pos = 0
        order = self._ng_order
        rows = []          # (ifid, ts_ns or None, cap, orig, data offset)
        while pos + 12 <= end:
            if bytes(buf[pos:pos + 4]) == _rd._PCAPNG_SHB:
                if rows:
                    break
                bom = bytes(buf[pos + 8:pos + 12])
                if bom == b"\x4d\x3c\x2b\x1a":
                    order = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    order = ">"
                else:
                    self.error = "pcapng section with a bad byte-order magic"
                    self.info.warnings.append(self.error + "; stopped reading")
                    break
                blen = struct.unpack_from(order + "I", buf, pos + 4)[0]
                if blen < 28 or blen & 3 or blen > _rd._MAX_RECORD:
                    self.error = "corrupt pcapng section header"
                    self.info.warnings.append(self.error + "; stopped reading")
                    break
                if pos + blen > end:
                    break
                self._ng_order = order
                self._section_base = len(self._ifaces)
                self._take(pos + blen)
                return None, True
            btype, blen = struct.unpack_from(order + "II", buf, pos)
            if blen < 12 or blen & 3 or blen > _rd._MAX_RECORD:
                self.error = f"corrupt pcapng block after {self.info.records} records"
                self.info.warnings.append(self.error + "; stopped reading")
                break
            if pos + blen > end:
                break
            if btype == 1:
                if rows:
                    break
                if blen >= 20:
                    _rd.Capture._add_iface(self, buf, pos, blen, order)
                self._take(pos + blen)
                return None, True
            if btype in (6, 2) and blen >= 32:
                ifid, hi, lo, cap, orig = struct.unpack_from(order + "IIIII", buf, pos + 8)
                if btype == 2:
                    ifid = ifid & 0xFFFF if order == "<" else ifid >> 16
                g = ifid + self._section_base
                if ifid < len(self._ifaces) - self._section_base:
                    _lt, mul, div, off, _s = self._ifaces[g]
                    t = ((hi << 32 | lo) * mul) // div + off
                    rows.append((g, t, min(cap, blen - 32), orig, pos + 28))
                else:
                    rows.append((-1, None, min(cap, blen - 32), orig, pos + 28))
            elif btype == 3 and blen >= 16:
                orig = struct.unpack_from(order + "I", buf, pos + 8)[0]
                g = self._section_base
                cap = min(orig, blen - 16)
                if len(self._ifaces) > g and self._ifaces[g][4]:
                    cap = min(cap, self._ifaces[g][4])
                rows.append((g if len(self._ifaces) > g else -1, None, cap, orig, pos + 12))
            pos += blen
        if not rows:
            if pos:
                self._take(pos)
            return None, False
        region = self._take(pos)
        n = len(rows)
        ts = np.empty(n, np.int64)
        last = self._last_ts
        for i, r in enumerate(rows):
            if r[1] is not None:
                last = min(max(r[1], -(1 << 63)), (1 << 63) - 1)
            ts[i] = last
        self._last_ts = last
        g = np.array([r[0] for r in rows], np.int64)
        lt_table = np.array([i[0] for i in self._ifaces] + [_rd._NO_IFACE], np.int64)
        lt_rows = lt_table[g]          # -1 indexes the trailing _NO_IFACE entry
        lts = tuple(int(x) for x in np.unique(lt_rows))
        doffs = np.array([r[4] for r in rows], np.int64)
        caps = np.array([r[2] for r in rows], np.int64)
        origs = np.array([r[3] for r in rows], np.int64)
        return self._emit(region, doffs, caps, origs, ts, g, lt_rows, lts), not self.error


class PcapWriter:
    """A nanosecond pcap file written record by record (the live backends' --write). Flushed on every batch,
    so the file is a valid capture up to its last complete record whenever it is read."""

    def __init__(self, path: str, linktype: int, snaplen: int = 262144):
        self.path = path
        self.fh = open(path, "wb")
        self.fh.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, snaplen, linktype))
        self.records = 0

    def write(self, frames: list[tuple[int, bytes, int]]) -> None:
        pack = struct.Struct("<IIII").pack
        parts = []
        for ts, data, orig in frames:
            s, ns = divmod(ts, NS)
            parts.append(pack(s, ns, len(data), orig))
            parts.append(data)
        self.fh.write(b"".join(parts))
        self.records += len(frames)

    def write_located(self, region: bytes, doffs, caps, origs, ts) -> None:
        """The frames of `FrameDecoder.located`'s arguments (numpy arrays) as records."""
        n = len(doffs)
        if not n:
            return
        hdr = np.empty((n, 4), "<u4")
        hdr[:, 0], hdr[:, 1] = np.divmod(ts, NS)
        hdr[:, 2], hdr[:, 3] = caps, origs
        hb = hdr.tobytes()
        mv = memoryview(region)
        parts = []
        for i, (o, c) in enumerate(zip(doffs.tolist(), caps.tolist())):
            parts.append(hb[16 * i:16 * i + 16])
            parts.append(mv[o:o + c])
        self.fh.write(b"".join(parts))
        self.records += n

    def flush(self) -> None:
        self.fh.flush()

    def close(self) -> None:
        try:
            self.fh.close()
        except OSError:
            pass
