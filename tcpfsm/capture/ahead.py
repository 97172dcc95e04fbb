"""Reading ahead: a capture's batches decoded in a worker thread while the analysis works on earlier ones.

Owns `read_ahead(batches, depth)`: it takes any batch iterator (`Capture.batches`, a multi-file capture's,
the dpkt or tshark engine's) and yields the same batches, in the same order, each decoded by a worker
thread up to `depth` batches before the consumer asks for it. Nothing else changes: the worker runs the
same generator the consumer would have run, so the batches, the capture's counters (`CaptureInfo`) and its
side tables (ICMP errors, tunnels) are the same objects with the same contents once the iterator is
exhausted. The consumer must only not rely on those counters *during* the loop being in step with the batch
it holds (they may already count later batches; `tcpfsm.api` reads them for progress display only, and the
ICMP feed hands errors over by record number, not by arrival).

Why it pays: the compiled decoder (`_decode.decode_group`, `walk_pcap`) releases the GIL while it walks the
records, so on a machine with a second core, reading and decoding overlap the tracker instead of adding to
it. With the uncompiled decoder it overlaps nothing (the GIL is held throughout) and costs a thread
handoff per batch.

The handoff: the worker needs the GIL between its kernels (numpy and Python steps, a few a batch), and a
thread waiting for the GIL gets it when the holder lets go or, at the latest, after the interpreter's switch
interval (5 ms by default): with a GIL-bound analysis holding it, each of the worker's steps waited that long,
and the worker fell behind (every batch was waited for, ~2-3 ms each, on the bench capture). While the worker
runs, the switch interval is at most `SWITCH` (1 ms: the analysis of the bench capture 0.89 -> 0.86 s, the
median of five; 0.5 ms was no better), and is put back when the iteration ends.

Errors: an exception raised by the reader (a truncated or corrupt capture, an I/O error) is raised again in
the consumer, at the batch where it happened, after every batch read before it -- as without the thread.
If the consumer stops early (an exception, `close()`), the worker is told to stop, the reader's generator
is closed in the worker (its `finally`, e.g. `Capture.close`, runs there) and the worker is joined before
`close()` returns: no thread outlives the iteration, no capture is left open.
"""
from __future__ import annotations

import queue
import sys
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

_DONE = object()            # the reader is exhausted
_POLL = 0.05                # seconds between the worker's looks at the stop flag while the queue is full
SWITCH = 0.001              # the interpreter's switch interval while a worker runs, at most (seconds)


def read_ahead(batches: Iterable[T], depth: int = 2) -> Iterator[T]:
    """`batches`' items, in order, produced by a worker thread at most `depth` items ahead (depth < 1: no
    thread, `batches` itself)."""
    if depth < 1:
        yield from batches
        return
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        it = iter(batches)
        try:
            for b in it:
                if not put((b, None)):
                    return
            put((_DONE, None))
        except BaseException as e:          # (handed to the consumer, raised there)
            put((_DONE, e))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=work, name="tcpfsm-read-ahead", daemon=True)
    was = sys.getswitchinterval()
    if was > SWITCH:
        sys.setswitchinterval(SWITCH)
    worker.start()
    try:
        while True:
            b, err = q.get()
            if b is _DONE:
                if err is not None:
                    raise err
                return
            yield b
    finally:
        stop.set()
        while worker.is_alive():            # (unblock a worker waiting to put, then wait for it)
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            worker.join(_POLL)
        if was > SWITCH and sys.getswitchinterval() == SWITCH:      # (unless someone else changed it since)
            sys.setswitchinterval(was)
