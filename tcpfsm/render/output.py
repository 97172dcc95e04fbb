"""Where rendered bytes go: a file or stdout, in bounded chunks, every write checked.

Renderers hand `Output.write` small pieces (one flow, one event line) as they produce them; the pieces
gather in one reused buffer and leave in chunks of about `CHUNK` bytes; a piece that is a chunk already
(records.FlowEncoder.write hands out a document's flows that way) leaves as it is, without a copy. Nothing
here ever builds the whole document, and no write can be lost quietly: Linux returns at most 0x7ffff000 bytes from one
write(2) and a full disk returns fewer or fails, so every chunk is written in a loop until all of it is
out, and a failure raises `OutputError` ("cannot write FILE: No space left on device"), which the CLI
prints as one line with a non-zero exit. A reader that went away (`tcpfsm ... | head -1`) raises
`BrokenPipeError`, which the CLI ends quietly, as `ls | head` does.

Chunks for a file descriptor are written by a writer thread, at most `WRITE_AHEAD` of them queued: write(2)
releases the GIL, so on a second core the kernel's copying of a large document (53 MB for the bench capture)
overlaps the rendering of the next chunk instead of adding to it. Order and completeness are the same; a
failure in the writer is raised in the renderer at its next `write`, `flush` or `close` (the one that finds
it), the chunks after it are dropped, and `close` waits for every chunk before it returns.

This module owns no format: it moves bytes.
"""
from __future__ import annotations

import codecs
import io
import os
import queue
import sys
import threading

CHUNK = 1 << 20              # bytes gathered before one write(2): bounded memory, few system calls
MAX_WRITE = 1 << 30          # never ask write(2) for more than this at once (Linux caps it at 0x7ffff000)
WRITE_AHEAD = 4              # chunks queued for the writer thread at most (0: write in the caller's thread)


class OutputError(Exception):
    """Writing the output failed (disk full, I/O error, file system gone): the message is for the user."""


class Output:
    """A byte sink on a path (created or truncated) or on stdout ("-" or None).

        with Output(path) as out:
            out.write(b"...")          # bytes, buffered
            out.text("...")            # str, UTF-8

    Leaving the `with` block normally flushes and closes (and checks both); leaving it on an exception
    drops what is still buffered and closes the file without hiding the exception."""

    def __init__(self, path: str | None = None):
        self.buf = bytearray()
        self._stream = None
        self._writer: _Writer | None = None      # made at the first chunk (WRITE_AHEAD > 0)
        self.fd = -1
        if path and path != "-":
            self.name = path
            try:
                self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o666)
            except OSError as e:
                raise OutputError(f"cannot write {path}: {e.strerror}") from None
            self.owned = True
            return
        self.name = "stdout"
        self.owned = False
        try:
            sys.stdout.flush()              # whatever was printed before comes first
            self.fd = sys.stdout.fileno()
        except (AttributeError, ValueError, io.UnsupportedOperation):
            self._stream = sys.stdout       # stdout replaced by a Python object (tests, embedding)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise _error(self.name, e) from None

    # -- writing ---------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Buffer `data` (bytes or a view: it is copied or written out before this returns, never kept)."""
        buf = self.buf
        if len(data) >= CHUNK and self._stream is None:   # a chunk already (FlowEncoder.write's): no gathering
            self.flush()
            if WRITE_AHEAD > 0:
                self._send(bytes(data))                     # (the caller reuses its buffer: the writer gets a copy)
            else:
                self._write_all(data)
            return
        buf += data
        if len(buf) >= CHUNK:
            self.flush()

    def text(self, s: str) -> None:
        self.write(s.encode("utf-8"))

    def flush(self) -> None:
        """Write out everything buffered, completing short writes; raise on any failure."""
        if not self.buf:
            return
        if self._stream is not None:
            self._flush_stream()
            return
        buf, self.buf = self.buf, bytearray()      # a failed write leaves nothing half-sent behind
        if WRITE_AHEAD > 0:
            self._send(buf)                         # (handed over: the writer owns it now)
            return
        self._write_all(buf)
        del buf[:]                                  # the emptied buffer is the next one: reused, not regrown
        self.buf = buf

    def _send(self, data) -> None:
        """`data` (owned by the writer from now on) to the writer thread, after every chunk sent before it;
        raise what the writer met since the last call."""
        w = self._writer
        if w is None:
            w = self._writer = _Writer(self)
        w.check()
        w.put(data)

    def _drain(self) -> None:
        """Wait until the writer has written everything sent to it (or failed), end it, and raise its failure."""
        w, self._writer = self._writer, None
        if w is not None:
            w.finish()
            w.check()

    def _write_all(self, data) -> None:
        """All of `data` to the file descriptor, completing short writes; raise on any failure."""
        try:
            with memoryview(data) as view:
                done, size = 0, len(view)
                while done < size:
                    n = os.write(self.fd, view[done:done + MAX_WRITE])
                    if n <= 0:                               # no progress and no errno: never spin
                        raise OSError(0, f"short write ({done} of {size} bytes)")
                    done += n
        except BrokenPipeError:
            raise
        except OSError as e:
            raise _error(self.name, e) from None

    def _flush_stream(self) -> None:
        data, stream = bytes(self.buf), self._stream
        del self.buf[:]
        binary = getattr(stream, "buffer", None)
        try:
            if binary is not None:
                stream.flush()
                binary.write(data)
                binary.flush()
            else:                                            # a text-only object: decode across chunk edges
                if not hasattr(self, "_decoder"):
                    self._decoder = codecs.getincrementaldecoder("utf-8")()
                stream.write(self._decoder.decode(data))
                stream.flush()
        except BrokenPipeError:
            raise
        except OSError as e:
            raise _error(self.name, e) from None

    def close(self) -> None:
        """Flush, wait for the writer, then close a file we opened (its close is checked too: NFS reports late
        errors there)."""
        try:
            self.flush()
            self._drain()
        finally:
            self._release()

    def _release(self) -> None:
        w, self._writer = self._writer, None
        if w is not None:                   # (leaving on a failure: what is still queued is dropped)
            w.abandon()
        fd, self.fd = self.fd, -1
        if self.owned and fd >= 0:
            try:
                os.close(fd)
            except OSError as e:
                raise _error(self.name, e) from None

    def __enter__(self) -> "Output":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close()
        else:
            del self.buf[:]
            try:
                self._release()
            except OutputError:
                pass                    # the first failure is the one to report
        return False

    # -- for renderers that want a text file (rich, csv, the Zeek writer) ------------------------
    def text_file(self) -> "TextSink":
        return TextSink(self)


class _Writer:
    """The thread that writes an Output's chunks, in order (`Output._write_all`); the first failure is kept for
    the renderer (`check`) and every chunk after it dropped."""

    def __init__(self, out: Output):
        self.out = out
        self.q: queue.Queue = queue.Queue(WRITE_AHEAD)
        self.error: BaseException | None = None
        self.stop = False
        self.thread = threading.Thread(target=self._run, name="tcpfsm-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            data = self.q.get()
            if data is None:
                return
            if self.error is None and not self.stop:
                try:
                    self.out._write_all(data)
                except BaseException as e:          # (OutputError, BrokenPipeError: the renderer raises it)
                    self.error = e

    def put(self, data) -> None:
        self.q.put(data)

    def check(self) -> None:
        e, self.error = self.error, None
        if e is not None:
            self.stop = True                    # (nothing after a failure is written)
            raise e

    def finish(self) -> None:
        self.q.put(None)
        self.thread.join()

    def abandon(self) -> None:
        self.stop = True
        while True:                             # (make room for the end mark, dropping what is queued)
            try:
                self.q.put_nowait(None)
                break
            except queue.Full:
                try:
                    self.q.get_nowait()
                except queue.Empty:
                    pass
        self.thread.join()


class TextSink:
    """A minimal text file over an `Output`: write(str), flush(), isatty()."""

    def __init__(self, out: Output):
        self.out = out

    def write(self, s: str) -> int:
        self.out.write(s.encode("utf-8"))
        return len(s)

    def flush(self) -> None:
        pass                            # the Output decides when bytes leave; close() flushes

    def isatty(self) -> bool:
        return not self.out.owned and self.out.fd >= 0 and os.isatty(self.out.fd)

    @property
    def encoding(self) -> str:
        return "utf-8"


def _error(name: str, e: OSError) -> OutputError:
    why = e.strerror or str(e)
    return OutputError(f"cannot write {name}: {why}")
