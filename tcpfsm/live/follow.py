"""Sources for `analyze --follow`: a capture file still being written, or a pcap stream on stdin.

They look like a live backend to the engine (`poll`, `stop`, `stats`, `info`), with no drop counter of
their own: whatever wrote the stream knows its drops, not the reader.
"""
from __future__ import annotations

import os
import select
import sys
import time

from ..capture.batch import Batch, CaptureError
from .stream import StreamDecoder


class FileFollower:
    """Reads FILE as it grows (like `tail -f`). With tcpdump's `-C` rotation (FILE, FILE1, FILE2, ...), moves
    to the next file once it appears and the current one has been read to its end."""

    name = "follow"
    drop_source = "unknown: read from a file (the writer's drops are not recorded in it)"
    exhausted = False

    def __init__(self, path: str):
        self.path = path
        try:
            self.fh = open(path, "rb")
        except FileNotFoundError:
            raise CaptureError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise CaptureError(f"{path}: is a directory") from None
        except OSError as e:
            raise CaptureError(f"{path}: cannot open ({e.strerror or e})") from None
        self.decoder = StreamDecoder(path)
        self.files = [path]
        self._k = 0
        self.received = self.dropped = 0

    @property
    def info(self):
        return self.decoder.info

    def start(self) -> None:
        pass

    def _next_name(self) -> str:
        return f"{self.path}{self._k + 1}"

    def poll(self, timeout: float) -> list[Batch]:
        out: list[Batch] = []
        t_end = time.monotonic() + 0.05
        got = False
        while time.monotonic() < t_end:
            d = self.fh.read(1 << 20)
            if not d:
                break
            got = True
            out += self.decoder.feed(d)
        if not got:
            nxt = self._next_name()
            if os.path.exists(nxt):
                d = self.fh.read()                       # the rest of the finished file
                if d:
                    out += self.decoder.feed(d)
                self.fh.close()
                self.fh = open(nxt, "rb")
                self._k += 1
                self.files.append(nxt)
                info = self.decoder.info
                if self.decoder.pending:
                    info.warnings.append(f"{self.files[-2]}: ends in the middle of a record")
                self.decoder = StreamDecoder(nxt, info=info)
            elif timeout > 0:
                time.sleep(min(timeout, 0.1))
        return out

    def refresh_stats(self) -> None:
        pass

    def stop(self) -> list[Batch]:
        out = []
        d = self.fh.read()
        if d:
            out += self.decoder.feed(d)
        self.fh.close()
        self.decoder.finish()
        return out

    def stats(self) -> dict:
        return {"backend": self.name, "received": None, "dropped": None, "ifdropped": None,
                "source": self.drop_source, "files": len(self.files)}


class StdinFollower:
    """A pcap / pcapng stream on stdin (`tcpdump -w - | tcpfsm analyze --follow -`); ends at EOF."""

    name = "stdin"
    drop_source = "unknown: read from a pipe (the writer reports its own drops)"

    def __init__(self, stream=None):
        raw = stream if stream is not None else getattr(sys.stdin, "buffer", sys.stdin)
        if raw is None:
            raise CaptureError("stdin is not available")
        self.fd = raw.fileno()
        self.decoder = StreamDecoder("<stdin>")
        self.exhausted = False
        self.received = self.dropped = 0

    @property
    def info(self):
        return self.decoder.info

    def start(self) -> None:
        pass

    def poll(self, timeout: float) -> list[Batch]:
        if self.exhausted:
            if timeout > 0:
                time.sleep(min(timeout, 0.05))
            return []
        out: list[Batch] = []
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return out
        t_end = time.monotonic() + 0.05
        while True:
            try:
                d = os.read(self.fd, 1 << 20)
            except BlockingIOError:
                break
            except OSError as e:
                self.decoder.info.warnings.append(f"read error: {e}")
                d = b""
            if not d:
                self.exhausted = True
                break
            out += self.decoder.feed(d)
            if time.monotonic() > t_end or not select.select([self.fd], [], [], 0)[0]:
                break
        if self.exhausted and not self.decoder.started:
            raise CaptureError("<stdin>: empty stream (no pcap header)")
        return out

    def refresh_stats(self) -> None:
        pass

    def stop(self) -> list[Batch]:
        self.decoder.finish()
        return []

    def stats(self) -> dict:
        return {"backend": self.name, "received": None, "dropped": None, "ifdropped": None,
                "source": self.drop_source}
