"""More than 4 GiB through the output path, every byte checked (issue 12 part 3).

A child process writes 4.5 GiB through `tcpfsm.render.output.Output` -- on its stdout (a pipe), and on a
path given as `-o` would give it -- in pieces of uneven sizes (1 byte to 3 MiB, so chunk edges fall
everywhere); this process reads the other end and compares every byte with the stream expected. The path is a
FIFO: the same open/write/close calls as a file, without 4.5 GiB of disk. Both ends stream, so memory
stays at a few MiB and the test costs the copies (a few seconds each on this machine): it runs in the
default suite.

What it guards: Linux returns at most 0x7ffff000 bytes from one write(2), and a short write that is not
resumed loses the rest silently (the output once stopped at exactly 2,147,479,552 bytes, exit 0). 4 GiB
also passes every 32-bit length or offset boundary.
"""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import textwrap

import pytest

TOTAL = 4 * 2**30 + 512 * 2**20 + 12345        # > 4 GiB, not a multiple of anything
PERIOD = (1 << 20) + 17                         # the stream repeats with this period (a prime-ish length)
READ = 8 << 20

# The writer: the periodic stream cut in pieces of uneven sizes (memoryviews: no copy on this side);
# prints how many bytes it handed to Output on stderr.
CHILD = textwrap.dedent(f"""
    import sys
    from tcpfsm.render.output import Output
    total = int(sys.argv[1]); path = sys.argv[2] if len(sys.argv) > 2 else None
    block = bytes((i * 7 + i // 251) & 0xFF for i in range({PERIOD}))
    big = memoryview(block * 4)
    sizes = [1, 4093, 1 << 20, (1 << 20) + 1, 3 << 20, 77, 65536, (2 << 20) - 5]
    done, i = 0, 0
    with Output(path) as out:
        while done < total:
            n = min(sizes[i % len(sizes)], total - done)
            ph = done % {PERIOD}
            out.write(big[ph:ph + n])
            done += n
            i += 1
    print(done, file=sys.stderr)
""")
BLOCK = bytes((i * 7 + i // 251) & 0xFF for i in range(PERIOD))
BIG = BLOCK * (READ // PERIOD + 2)


def _read_all(f) -> int:
    """Read to the end, checking every byte against the periodic stream; the count read."""
    try:                    # a 1 MiB pipe: the writer's 1 MiB chunks in one go, a sixteenth of the switches
        fcntl.fcntl(f.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except OSError:
        pass
    buf = bytearray(READ)
    n = 0
    while True:
        k = f.readinto(buf)
        if not k:
            return n
        ph = n % PERIOD
        if buf[:k] != BIG[ph:ph + k]:
            bad = next(i for i in range(k) if buf[i] != BIG[ph + i])
            raise AssertionError(f"byte {n + bad:,} differs")
        n += k


def _check(p: subprocess.Popen, got: int) -> None:
    err = p.stderr.read().decode()
    assert p.wait() == 0, err
    assert int(err) == TOTAL
    assert got == TOTAL, f"read {got:,} bytes of {TOTAL:,}"


def test_more_than_4gib_through_stdout_arrive_whole():
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(TOTAL)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got = _read_all(p.stdout)
    _check(p, got)


def test_more_than_4gib_through_an_output_path_arrive_whole(tmp_path):
    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(TOTAL), str(fifo)], stderr=subprocess.PIPE)
    with open(fifo, "rb") as f:
        got = _read_all(f)
    _check(p, got)


def test_a_reader_that_stops_early_is_noticed(tmp_path):
    """The contrary case, so that the checks above can fail: a reader that takes 1 GiB and stops leaves the
    writer with a broken pipe (BrokenPipeError), not a silent exit 0 and a full count."""
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(TOTAL)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    n = 0
    while n < 2**30:
        b = p.stdout.read(READ)
        assert b
        n += len(b)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait() != 0
    assert "BrokenPipeError" in err
