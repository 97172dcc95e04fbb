"""Capture backends for live mode. Each one yields `Batch`es and reports what it lost.

* `tcpdump`  — `tcpdump -U -w -` piped into the streaming pcap decoder (libpcap's TPACKET_V3 ring, the
  fast one). Drops: libpcap's counters, asked for with SIGUSR1 while running (tcpdump prints "N packets
  captured, N packets received by filter, N packets dropped by kernel") and printed by tcpdump on exit.
* `afpacket` — a raw AF_PACKET socket read in Python (no external program; the BPF filter is compiled with
  libpcap through ctypes and attached with SO_ATTACH_FILTER). Drops: the kernel's PACKET_STATISTICS.
* `scapy`    — scapy's `AsyncSniffer` on its L2 listen socket (frames kept raw, not dissected). Drops: the
  kernel's PACKET_STATISTICS of scapy's socket (a slow reader overflows the socket buffer).

All three drop the duplicate copy of each packet that AF_PACKET delivers on loopback (PACKET_OUTGOING),
as libpcap does, so `-i lo` shows every packet once.
"""
from __future__ import annotations

import collections
import ctypes
import ctypes.util
import errno
import fcntl
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

from ..capture.batch import Batch
from .stream import FrameDecoder, PcapWriter, StreamDecoder

SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
PACKET_OUTGOING = 4
ETH_P_ALL = 0x0003
ARPHRD_ETHER, ARPHRD_LOOPBACK = 1, 772
LINKTYPE_ETHERNET = 1
# What an AF_PACKET SOCK_RAW socket delivers per ARPHRD_* device type, as a pcap link type (libpcap's
# mapping): Ethernet (loopback has a zero Ethernet header), bare IP on tun/WireGuard (NONE), IP-in-IP,
# ip6tnl, SIT and PPP devices, and 802.11 (with radiotap in monitor mode). capture/links.py decodes them.
ARPHRD_LINKTYPE = {1: 1, 772: 1, 0xFFFE: 101, 768: 101, 769: 101, 776: 101, 512: 101, 801: 105, 803: 127}


def iface_linktype(iface: str) -> int:
    """The link type of an interface's frames from its ARPHRD type (/sys/class/net/IFACE/type), Ethernet if
    unreadable (the socket's own type is checked once bound)."""
    try:
        with open(f"/sys/class/net/{iface}/type") as fh:
            return ARPHRD_LINKTYPE.get(int(fh.read().strip()), LINKTYPE_ETHERNET)
    except (OSError, ValueError):
        return LINKTYPE_ETHERNET


class LiveError(Exception):
    """A one-line, user-fixable problem (no privilege, unknown interface, bad filter)."""


# -- checks -------------------------------------------------------------------------------------------
def has_capture_privilege() -> bool:
    """CAP_NET_RAW in the effective set (root normally has it; a root without it cannot capture either)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 13))     # CAP_NET_RAW
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


NO_PRIVILEGE = "live capture needs root or the CAP_NET_RAW capability (try sudo, or setcap cap_net_raw+eip)"


def check_iface(iface: str) -> None:
    if iface == "any":
        return
    try:
        socket.if_nametoindex(iface)
    except OSError:
        names = ", ".join(n for _, n in socket.if_nameindex())
        raise LiveError(f"no such interface {iface!r} (interfaces here: {names})") from None


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_libpcap = None


def _pcap():
    global _libpcap
    if _libpcap is None:
        name = ctypes.util.find_library("pcap") or "libpcap.so.0.8"
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            _libpcap = False
            return None
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_BpfProgram), ctypes.c_char_p, ctypes.c_int,
                                     ctypes.c_uint32]
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
        lib.pcap_close.argtypes = [ctypes.c_void_p]
        _libpcap = lib
    return _libpcap or None


def compile_bpf(expr: str, linktype: int = LINKTYPE_ETHERNET, snaplen: int = 262144) -> bytes | None:
    """The filter as raw `struct sock_filter` instructions (8 bytes each), or None when libpcap is not
    available. Raises LiveError with libpcap's message for a bad expression."""
    lib = _pcap()
    if lib is None:
        return None
    p = lib.pcap_open_dead(linktype, snaplen)
    prog = _BpfProgram()
    try:
        if lib.pcap_compile(p, ctypes.byref(prog), expr.encode(), 1, 0xFFFFFFFF) != 0:
            msg = (lib.pcap_geterr(p) or b"syntax error").decode(errors="replace")
            raise LiveError(f"bad capture filter {expr!r}: {msg}")
        code = ctypes.string_at(prog.bf_insns, prog.bf_len * 8)
        lib.pcap_freecode(ctypes.byref(prog))
        return code
    finally:
        lib.pcap_close(p)


def check_filter(expr: str | None) -> None:
    if expr:
        compile_bpf(expr)


def _packet_stats(sock: socket.socket) -> tuple[int, int]:
    """(packets, drops) since the last call (the kernel resets them on read)."""
    try:
        return struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    except OSError:
        return 0, 0


# -- the backends ---------------------------------------------------------------------------------------
class Backend:
    name = "?"
    drop_source = ""

    def __init__(self, iface: str, bpf: str | None = None, write: str | None = None, snaplen: int = 262144,
                 bufsize_mb: int = 64):
        self.iface = iface
        self.bpf = bpf or None
        self.write_path = write
        self.snaplen = snaplen
        self.bufsize = bufsize_mb << 20
        self.dropped = 0            # packets lost by the kernel / libpcap
        self.received = 0           # packets the capture mechanism saw (incl. those dropped)
        self.ifdropped = 0
        self.decoder: FrameDecoder = FrameDecoder(f"live:{iface}")

    @property
    def info(self):
        return self.decoder.info

    def start(self) -> None: ...

    def poll(self, timeout: float) -> list[Batch]: ...

    def refresh_stats(self) -> None: ...

    def stop(self) -> list[Batch]: ...

    def stats(self) -> dict:
        return {"backend": self.name, "received": self.received, "dropped": self.dropped,
                "ifdropped": self.ifdropped, "source": self.drop_source}


class TcpdumpBackend(Backend):
    name = "tcpdump"
    drop_source = "libpcap (tcpdump: packets dropped by kernel)"
    _STATS = re.compile(r"(\d+) packets? captured, (\d+) packets? received by filter, (\d+) packets? dropped by "
                        r"kernel(?:, (\d+) packets? dropped by interface)?")

    def __init__(self, *a, tcpdump: str | None = None, **kw):
        super().__init__(*a, **kw)
        self.tcpdump = tcpdump or shutil.which("tcpdump")
        self.proc: subprocess.Popen | None = None
        self._tee = None
        self._err = b""
        self.captured = 0

    def start(self) -> None:
        if not self.tcpdump:
            raise LiveError("tcpdump not found (install it, or use --backend afpacket|scapy)")
        if self.write_path:
            try:
                self._tee = open(self.write_path, "wb")
            except OSError as e:
                raise LiveError(f"cannot write {self.write_path}: {e.strerror}") from None
        self.decoder = StreamDecoder(f"live:{self.iface}", tee=self._tee)
        cmd = [self.tcpdump, "-i", self.iface, "-n", "-U", "-w", "-", "-s", str(self.snaplen),
               "-B", str(self.bufsize >> 10), "--immediate-mode"]
        if self.bpf:
            cmd.append(self.bpf)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        for f in (self.proc.stdout, self.proc.stderr):
            fl = fcntl.fcntl(f.fileno(), fcntl.F_GETFL)
            fcntl.fcntl(f.fileno(), fcntl.F_SETFL, fl | os.O_NONBLOCK)
        # wait for "listening on ..." (capture running) or an early exit (an error)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            self._read_err(0.05)
            if b"listening on" in self._err:
                return
            if self.proc.poll() is not None:
                self._read_err(0)
                raise LiveError(self._error_line())
        raise LiveError("tcpdump did not start capturing within 10 s")

    def _error_line(self) -> str:
        lines = [ln.strip() for ln in self._err.decode(errors="replace").splitlines() if ln.strip()]
        text = " ".join(lines)
        if "ermission" in text or "Operation not permitted" in text:
            return NO_PRIVILEGE
        if "No such device" in text:
            return f"no such interface {self.iface!r}"
        if "syntax error" in text or "filter expression" in text:
            return f"bad capture filter {self.bpf!r}: {lines[-1].removeprefix('tcpdump: ')}"
        return "tcpdump failed: " + (lines[0].removeprefix("tcpdump: ") if lines else f"exit {self.proc.returncode}")

    def _read_err(self, timeout: float) -> None:
        if self.proc is None:
            return
        r, _, _ = select.select([self.proc.stderr], [], [], timeout)
        if r:
            try:
                d = os.read(self.proc.stderr.fileno(), 65536)
            except BlockingIOError:
                d = b""
            if d:
                self._err += d
                self._parse_stats()

    def _parse_stats(self) -> None:
        text = self._err.decode(errors="replace")
        ms = list(self._STATS.finditer(text.replace("\n", ", ")))
        if not ms:
            # the exit report is three lines: "N packets captured" / "... received by filter" / "... dropped by kernel"
            cap = re.findall(r"(\d+) packets? captured", text)
            rcv = re.findall(r"(\d+) packets? received by filter", text)
            drp = re.findall(r"(\d+) packets? dropped by kernel", text)
            if cap and rcv and drp:
                self.captured, self.received, self.dropped = int(cap[-1]), int(rcv[-1]), int(drp[-1])
            return
        m = ms[-1]
        self.captured, self.received, self.dropped = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if m.group(4):
            self.ifdropped = int(m.group(4))
        # keep stderr small: only the tail matters
        if len(self._err) > 8192:
            self._err = self._err[-2048:]

    def poll(self, timeout: float) -> list[Batch]:
        out: list[Batch] = []
        p = self.proc
        fds = [p.stdout, p.stderr]
        r, _, _ = select.select(fds, [], [], timeout)
        if p.stderr in r:
            self._read_err(0)
        if p.stdout in r:
            t_end = time.monotonic() + 0.05
            while time.monotonic() < t_end:
                try:
                    d = os.read(p.stdout.fileno(), 1 << 20)
                except BlockingIOError:
                    break
                if not d:
                    break
                out += self.decoder.feed(d)
        return out

    @property
    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def stats(self) -> dict:
        """libpcap's counters as tcpdump prints them: `received` by the filter, `dropped` by the kernel (ring
        full), `captured` = written to us. At SIGTERM tcpdump exits without reading what is still in its ring,
        so received - dropped - captured packets were neither dropped nor seen: `unread_at_stop`."""
        d = super().stats()
        d["captured"] = self.captured
        d["unread_at_stop"] = max(0, self.received - self.dropped - self.captured) if self.exited else 0
        return d

    def refresh_stats(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGUSR1)      # tcpdump prints its counters to stderr
            except ProcessLookupError:
                pass
            self._read_err(0.02)

    def stop(self) -> list[Batch]:
        out: list[Batch] = []
        p = self.proc
        if p is None:
            return out
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        fl = fcntl.fcntl(p.stdout.fileno(), fcntl.F_GETFL)
        while time.monotonic() < deadline:
            r, _, _ = select.select([p.stdout, p.stderr], [], [], 0.1)
            if p.stderr in r:
                self._read_err(0)
            if p.stdout in r:
                try:
                    d = os.read(p.stdout.fileno(), 1 << 20)
                except BlockingIOError:
                    d = None
                if d == b"":
                    break
                if d:
                    out += self.decoder.feed(d)
            elif p.poll() is not None and not r:
                break
        fcntl.fcntl(p.stdout.fileno(), fcntl.F_SETFL, fl)
        try:
            p.wait(timeout=2)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        self._read_err(0)
        self.decoder.finish()
        if self._tee is not None:
            self._tee.close()
        for f in (p.stdout, p.stderr):
            f.close()
        return out


class _PacketSocketBase(Backend):
    def _make_socket(self) -> socket.socket:
        try:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise LiveError(NO_PRIVILEGE) from None
        return s


class AfPacketBackend(_PacketSocketBase):
    name = "afpacket"
    drop_source = "kernel (AF_PACKET PACKET_STATISTICS)"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.sock: socket.socket | None = None
        self.writer: PcapWriter | None = None
        self._buf = bytearray(max(self.snaplen, 65536 + 64))
        self._lo = False
        self._lt = LINKTYPE_ETHERNET

    def start(self) -> None:
        if self.iface == "any":
            raise LiveError("the afpacket backend needs one interface (use --backend tcpdump for 'any')")
        s = self._make_socket()
        self._lt = iface_linktype(self.iface)
        if self.bpf:
            code = compile_bpf(self.bpf, 12 if self._lt == 101 else self._lt, self.snaplen)  # (libpcap: DLT_RAW 12)
            if code is None:
                raise LiveError("libpcap not found: cannot compile the filter for the afpacket backend")
            insns = ctypes.create_string_buffer(code, len(code))
            prog = _SockFprog(len(code) // 8, ctypes.addressof(insns))
            s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(ctypes.string_at(ctypes.addressof(prog),
                                                                                    ctypes.sizeof(prog))))
        try:
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.bufsize)
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.bufsize)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        try:
            s.bind((self.iface, ETH_P_ALL))
        except OSError as e:
            s.close()
            if e.errno in (errno.ENODEV, errno.ENXIO):
                raise LiveError(f"no such interface {self.iface!r}") from None
            raise LiveError(f"cannot capture on {self.iface}: {e.strerror}") from None
        hatype = s.getsockname()[3]
        if ARPHRD_LINKTYPE.get(hatype) != self._lt:
            s.close()
            raise LiveError(f"{self.iface}: device type {hatype} not supported by the afpacket backend "
                            "(use --backend tcpdump)")
        self._lo = hatype == ARPHRD_LOOPBACK
        s.setblocking(False)
        _packet_stats(s)                 # reset: count from now on
        self.sock = s
        if self.write_path:
            try:
                self.writer = PcapWriter(self.write_path, self._lt, self.snaplen)
            except OSError as e:
                raise LiveError(f"cannot write {self.write_path}: {e.strerror}") from None

    def _read(self, budget: int = 20000, seconds: float = 0.05) -> list[tuple[int, bytes, int]]:
        frames = []
        s, buf, snap, lo = self.sock, self._buf, self.snaplen, self._lo
        recv = s.recvmsg_into
        anc = socket.CMSG_SPACE(16)
        t_end = time.monotonic() + seconds
        mv = memoryview(buf)
        n = 0
        while n < budget:
            try:
                nb, ancdata, _fl, addr = recv([mv], anc, socket.MSG_TRUNC)
            except (BlockingIOError, InterruptedError):
                break
            if lo and addr[2] == PACKET_OUTGOING:
                continue
            ts = None
            for lvl, typ, data in ancdata:
                if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS and len(data) >= 16:
                    sec, nsec = struct.unpack("qq", data[:16])
                    ts = sec * 1_000_000_000 + nsec
            if ts is None:
                ts = time.time_ns()
            frames.append((ts, bytes(mv[:min(nb, snap, len(buf))]), nb))
            n += 1
            if not n & 1023 and time.monotonic() > t_end:
                break
        return frames

    def poll(self, timeout: float) -> list[Batch]:
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            return []
        frames = self._read()
        if self.writer is not None and frames:
            self.writer.write(frames)
            self.writer.flush()
        b = self.decoder.frames(frames, self._lt)
        return [b] if b is not None else []

    def refresh_stats(self) -> None:
        if self.sock is not None:
            p, d = _packet_stats(self.sock)
            self.received += p
            self.dropped += d

    def stop(self) -> list[Batch]:
        out = []
        if self.sock is not None:
            frames = self._read(budget=1_000_000, seconds=1.0)
            if self.writer is not None and frames:
                self.writer.write(frames)
            b = self.decoder.frames(frames, self._lt)
            if b is not None:
                out.append(b)
            self.refresh_stats()
            self.sock.close()
            self.sock = None
        if self.writer is not None:
            self.writer.close()
        return out


class ScapyBackend(_PacketSocketBase):
    name = "scapy"
    drop_source = "kernel (PACKET_STATISTICS of scapy's socket)"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._q: collections.deque = collections.deque()
        self._ev = threading.Event()
        self.sniffer = None
        self.sock = None
        self.writer: PcapWriter | None = None
        self._lt = LINKTYPE_ETHERNET

    def start(self) -> None:
        if not has_capture_privilege():
            raise LiveError(NO_PRIVILEGE)
        if self.iface == "any":
            raise LiveError("the scapy backend needs one interface (use --backend tcpdump for 'any')")
        import logging
        logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
        from scapy.arch.linux import L2ListenSocket
        from scapy.config import conf
        from scapy.sendrecv import AsyncSniffer
        if self.bpf:
            check_filter(self.bpf)

        class _Sock(L2ListenSocket):
            """scapy's listen socket, without the loopback's duplicate outgoing copy, frames kept raw."""

            def recv_raw(self, x=65535):
                pkt, sa_ll, ts = self._recv_raw(self.ins, x)
                if self.lo and sa_ll[2] == PACKET_OUTGOING:
                    return None, None, None
                return self.LL, pkt, ts

        old = conf.bufsize
        conf.bufsize = self.bufsize
        try:
            self.sock = _Sock(iface=self.iface, filter=self.bpf)
        except PermissionError:
            raise LiveError(NO_PRIVILEGE) from None
        except OSError as e:
            raise LiveError(f"cannot capture on {self.iface}: {e.strerror or e}") from None
        except Exception as e:           # scapy's own exceptions (filter, interface)
            raise LiveError(f"scapy cannot capture on {self.iface}: {e}") from None
        finally:
            conf.bufsize = old
        hatype = self.sock.ins.getsockname()[3]
        if hatype not in ARPHRD_LINKTYPE:
            self.sock.close()
            raise LiveError(f"{self.iface}: device type {hatype} not supported by the scapy backend")
        self._lt = ARPHRD_LINKTYPE[hatype]
        self.sock.lo = hatype == ARPHRD_LOOPBACK
        self.sock.LL = conf.raw_layer
        _packet_stats(self.sock.ins)
        if self.write_path:
            try:
                self.writer = PcapWriter(self.write_path, self._lt, self.snaplen)
            except OSError as e:
                raise LiveError(f"cannot write {self.write_path}: {e.strerror}") from None
        q, ev = self._q, self._ev

        def cb(pkt):
            data = bytes(pkt)
            q.append((int(float(pkt.time) * 1e9), data, pkt.wirelen or len(data)))
            ev.set()

        self.sniffer = AsyncSniffer(opened_socket=self.sock, prn=cb, store=False)
        self.sniffer.start()
        time.sleep(0.2)                  # the sniffer thread is reading once this returns

    def _take(self) -> list[tuple[int, bytes, int]]:
        q = self._q
        out = []
        for _ in range(len(q)):
            out.append(q.popleft())
        return out

    def poll(self, timeout: float) -> list[Batch]:
        if not self._q:
            self._ev.wait(timeout)
        self._ev.clear()
        frames = self._take()
        if not frames:
            return []
        if self.writer is not None:
            self.writer.write(frames)
            self.writer.flush()
        b = self.decoder.frames(frames, self._lt)
        return [b] if b is not None else []

    def refresh_stats(self) -> None:
        if self.sock is not None and not self.sock.closed:
            p, d = _packet_stats(self.sock.ins)
            self.received += p
            self.dropped += d

    def stop(self) -> list[Batch]:
        self.refresh_stats()
        if self.sniffer is not None:
            try:
                self.sniffer.stop(join=True)
            except Exception:
                pass
        out = []
        frames = self._take()
        if self.writer is not None:
            if frames:
                self.writer.write(frames)
            self.writer.close()
        b = self.decoder.frames(frames, self._lt)
        if b is not None:
            out.append(b)
        if self.sock is not None:
            self.refresh_stats()
            try:
                self.sock.close()
            except Exception:
                pass
        return out


BACKENDS = {"tcpdump": TcpdumpBackend, "afpacket": AfPacketBackend, "scapy": ScapyBackend}


def pick_backend(name: str | None) -> str:
    """`auto`: tcpdump when installed (libpcap's ring: nothing lost at 20 k packets/s where scapy kept 12 %),
    else the raw AF_PACKET socket."""
    if name and name != "auto":
        return name
    return "tcpdump" if shutil.which("tcpdump") else "afpacket"


def make_backend(name: str | None, iface: str, bpf: str | None = None, write: str | None = None,
                 snaplen: int = 262144, bufsize_mb: int = 64) -> Backend:
    if not has_capture_privilege():
        raise LiveError(NO_PRIVILEGE)
    check_iface(iface)
    check_filter(bpf)
    return BACKENDS[pick_backend(name)](iface, bpf, write=write, snaplen=snaplen, bufsize_mb=bufsize_mb)
