#!/usr/bin/env python3
"""Record the tcpfsm benchmark capture from the real Linux TCP stack.

Two network namespaces joined by a veth pair (all names carry this process's
PID), a Python server in one and a Python client in the other, and tcpdump
capturing on the server's veth end:

    bench/out/bench.pcap   (snaplen 128, Ethernet/IPv4/TCP)
    bench/out/bench.json   (what was recorded; used to skip re-recording)

Connection mix (deterministic, seeded per connection index):
    client_close  normal close, client sends FIN first (most)
    server_close  server sends FIN first
    client_rst    client aborts with SO_LINGER 0 right after a request (RST)
    server_rst    server aborts with SO_LINGER 0 after its responses (RST)
    half_close    client shutdown(SHUT_WR), server keeps sending, then closes
    refused       SYN to a port nobody listens on (answered by RST)
    left_open     established and idle until the capture stops (capped)

Every conversation is a few request/response rounds of small messages sent
as separate writes with TCP_NODELAY, so ~30-60 packets per connection.

Recording stops after --connections connections or --seconds seconds,
whichever comes first. If the capture already exists and is big enough this
does nothing; --force re-records. Needs root (ip netns, tcpdump).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "out" / "bench.pcap"

SERVER_IP = "10.77.0.1"
CLIENT_IP = "10.77.0.2"
PORTS = [9001, 9002, 9003, 9004]
REFUSED_PORT = 9099

# Connection kinds: (name, weight). Weights are percentages.
KINDS = [
    ("client_close", 62),
    ("server_close", 12),
    ("client_rst", 6),
    ("server_rst", 4),
    ("half_close", 8),
    ("refused", 5),
    ("left_open", 3),
]
KIND_CODE = {name: i for i, (name, _) in enumerate(KINDS)}
KIND_NAME = {i: name for name, i in KIND_CODE.items()}

REQ_SIZE = 64          # client request, sent as REQ_PARTS writes
REQ_PARTS = (20, 44)
RESP_SIZE = 180        # server response, sent as RESP_PARTS writes
RESP_PARTS = (40, 60, 80)
TAIL_PARTS = (100, 100, 100, 100)   # server data after the client's FIN
SOCK_TIMEOUT = 15.0


# --------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------

def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def send_parts(sock: socket.socket, payload: bytes, parts) -> None:
    off = 0
    for p in parts:
        sock.sendall(payload[off:off + p])
        off += p


def abort(sock: socket.socket) -> None:
    """close() with SO_LINGER 0: the kernel sends RST instead of FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def set_sysctl(name: str, value: str) -> None:
    try:
        Path("/proc/sys", *name.split(".")).write_text(value)
    except OSError as e:
        print(f"warning: sysctl {name}={value}: {e}", file=sys.stderr)


def raise_nofile() -> None:
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def plan(seed: int, i: int, open_cap: int, open_used: list) -> tuple[str, int, int, int]:
    """(kind, rounds, abort_round, port_index) for connection i, deterministic per seed."""
    rng = random.Random(seed * 1_000_003 + i)
    r = rng.uniform(0, 100)
    acc = 0.0
    kind = KINDS[0][0]
    for name, w in KINDS:
        acc += w
        if r < acc:
            kind = name
            break
    if kind == "left_open":
        if open_used[0] >= open_cap:
            kind = "client_close"
        else:
            open_used[0] += 1
    rounds = rng.randint(3, 8)
    abort_round = rng.randint(1, rounds)
    return kind, rounds, abort_round, rng.randrange(len(PORTS))


# --------------------------------------------------------------------------
# server role (runs inside the server namespace)
# --------------------------------------------------------------------------

def run_server(cfg: dict) -> None:
    raise_nofile()
    set_sysctl("net.core.somaxconn", "8192")
    set_sysctl("net.ipv4.tcp_max_syn_backlog", "8192")
    held: list[socket.socket] = []
    held_lock = threading.Lock()
    errors = [0]
    resp = bytes(range(256)) * 2

    def handle(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(SOCK_TIMEOUT)
        try:
            while True:
                req = recv_exact(conn, REQ_SIZE)
                if len(req) < REQ_SIZE:        # EOF from the client
                    conn.close()
                    return
                kind = KIND_NAME.get(req[0], "client_close")
                rounds, rnd = req[1], req[2]
                if kind == "half_close" and rnd == rounds:
                    # the client has sent its last request and SHUT_WR:
                    # read its FIN, then keep talking in CLOSE_WAIT.
                    rest = conn.recv(1)
                    send_parts(conn, resp[:RESP_SIZE], RESP_PARTS)
                    if rest == b"":
                        for p in TAIL_PARTS:
                            conn.sendall(resp[:p])
                    conn.close()
                    return
                send_parts(conn, resp[:RESP_SIZE], RESP_PARTS)
                if rnd == rounds:
                    if kind == "server_close":
                        conn.close()
                        return
                    if kind == "server_rst":
                        abort(conn)
                        return
                    if kind == "left_open":
                        with held_lock:
                            held.append(conn)
                        return
                    # client_close / client_rst: wait for the client's FIN/RST
        except OSError:
            try:
                conn.close()
            except OSError:
                pass

    def worker(ls: socket.socket) -> None:
        while True:
            try:
                conn, _ = ls.accept()
            except OSError:
                errors[0] += 1
                time.sleep(0.01)
                continue
            handle(conn)

    for port in cfg["ports"]:
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((cfg["server_ip"], port))
        ls.listen(4096)
        for _ in range(cfg["workers_per_port"]):
            threading.Thread(target=worker, args=(ls,), daemon=True).start()
    print("READY", flush=True)
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    while True:
        time.sleep(3600)


# --------------------------------------------------------------------------
# client role (runs inside the client namespace)
# --------------------------------------------------------------------------

def run_client(cfg: dict) -> None:
    raise_nofile()
    set_sysctl("net.ipv4.ip_local_port_range", "1024 65535")
    set_sysctl("net.ipv4.tcp_tw_reuse", "1")
    n_total = cfg["connections"]
    deadline = time.monotonic() + cfg["seconds"]
    seed = cfg["seed"]
    lock = threading.Lock()
    next_i = [0]
    open_used = [0]
    held: list[socket.socket] = []
    done = {name: 0 for name, _ in KINDS}
    unexpected = {name: 0 for name, _ in KINDS}
    errmsgs: dict[str, int] = {}
    req_base = bytearray(b"R" * REQ_SIZE)

    def one(kind: str, rounds: int, abort_round: int, port_index: int) -> bool:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(SOCK_TIMEOUT)
        if kind == "refused":
            try:
                s.connect((cfg["server_ip"], cfg["refused_port"]))
            except ConnectionRefusedError:
                s.close()
                return True
            s.close()
            return False
        port = cfg["ports"][port_index % len(cfg["ports"])]
        s.connect((cfg["server_ip"], port))
        req = bytearray(req_base)
        req[0] = KIND_CODE[kind]
        req[1] = rounds
        for rnd in range(1, rounds + 1):
            req[2] = rnd
            send_parts(s, bytes(req), REQ_PARTS)
            if kind == "client_rst" and rnd == abort_round:
                abort(s)                       # response still in flight
                return True
            if kind == "half_close" and rnd == rounds:
                s.shutdown(socket.SHUT_WR)
                got = 0
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += len(chunk)
                s.close()
                return got == RESP_SIZE + sum(TAIL_PARTS)
            r = recv_exact(s, RESP_SIZE)
            if len(r) < RESP_SIZE:
                s.close()
                return False
        if kind == "client_close":
            s.close()
            return True
        if kind == "left_open":
            with lock:
                held.append(s)
            return True
        if kind == "server_close":
            ok = s.recv(1) == b""
            s.close()
            return ok
        if kind == "server_rst":
            try:
                s.recv(1)
            except ConnectionResetError:
                s.close()
                return True
            s.close()
            return False
        s.close()
        return False

    def worker() -> None:
        while True:
            with lock:
                i = next_i[0]
                if i >= n_total or time.monotonic() >= deadline:
                    return
                next_i[0] += 1
                kind, rounds, abort_round, port_index = plan(
                    seed, i, cfg["max_open"], open_used)
            try:
                ok = one(kind, rounds, abort_round, port_index)
            except OSError as e:
                ok = False
                key = f"{kind}: {type(e).__name__}"
                with lock:
                    errmsgs[key] = errmsgs.get(key, 0) + 1
            with lock:
                done[kind] += 1
                if not ok:
                    unexpected[kind] += 1

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(cfg["threads"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = {
        "attempted": sum(done.values()),
        "by_kind": done,
        "unexpected_by_kind": {k: v for k, v in unexpected.items() if v},
        "errors": errmsgs,
        "held_open": len(held),
        "seconds": round(time.monotonic() - t0, 2),
        "hit_time_limit": next_i[0] < n_total,
    }
    print("DONE " + json.dumps(stats), flush=True)
    # Keep the left-open sockets open until the parent has stopped tcpdump.
    sys.stdin.read()
    os._exit(0)


# --------------------------------------------------------------------------
# verification: count packets and connections in the written pcap
# --------------------------------------------------------------------------

def scan_pcap(path: Path) -> dict:
    """Pure-Python pass over a classic pcap: packets, SYNs, FINs, RSTs."""
    data = path.read_bytes()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        raise SystemExit(f"{path}: not a classic pcap file")
    linktype = struct.unpack(e + "I", data[20:24])[0]
    if linktype != 1:
        raise SystemExit(f"{path}: unexpected linktype {linktype} (want Ethernet)")
    rec = struct.Struct(e + "IIII")
    off, n = 24, len(data)
    packets = fins = rsts = syns = synacks = 0
    conns: set = set()
    first_ts = last_ts = None
    while off + 16 <= n:
        ts_sec, ts_frac, incl, _orig = rec.unpack_from(data, off)
        off += 16
        p = off
        off += incl
        packets += 1
        if first_ts is None:
            first_ts = ts_sec
        last_ts = ts_sec
        if incl < 34 or data[p + 12:p + 14] != b"\x08\x00":
            continue
        ip = p + 14
        if data[ip + 9] != 6:
            continue
        t = ip + (data[ip] & 0x0F) * 4
        if t + 14 > p + incl:
            continue
        flags = data[t + 13]
        if flags & 0x01:
            fins += 1
        if flags & 0x04:
            rsts += 1
        if flags & 0x02:
            if flags & 0x10:
                synacks += 1
            else:
                syns += 1
                conns.add(data[ip + 12:ip + 20] + data[t:t + 8])   # 4-tuple + ISN
    if off != n:
        print(f"warning: {path}: {n - off} trailing bytes (truncated last record)",
              file=sys.stderr)
    return {
        "packets": packets,
        "connections": len(conns),   # distinct (4-tuple, ISN) of client SYNs
        "syn": syns, "synack": synacks, "fin": fins, "rst": rsts,
        "capture_span_s": (last_ts - first_ts) if packets else 0,
    }


# --------------------------------------------------------------------------
# parent: namespaces, veth, tcpdump, processes, cleanup
# --------------------------------------------------------------------------

def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"command failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr.strip()}")
    return r


def disable_tx_csum_offload(ifname: str) -> None:
    """ethtool -K IF tx off, via SIOCETHTOOL (ethtool may not be installed).

    With offload on, veth hands tcpdump packets whose TCP checksum is only
    the pseudo-header sum; turning it off makes every checksum in the
    capture valid, as on a real wire.
    """
    import array
    import fcntl
    SIOCETHTOOL = 0x8946
    ETHTOOL_STXCSUM = 0x17
    ev = array.array("I", [ETHTOOL_STXCSUM, 0])
    addr, _ = ev.buffer_info()
    ifr = struct.pack("16sP", ifname.encode(), addr).ljust(40, b"\0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifr)
        except OSError as e:
            print(f"warning: could not turn off tx checksum offload on {ifname}: {e}",
                  file=sys.stderr)


def read_line_until(stream, pred, timeout: float, what: str) -> str:
    """Read lines from a pipe until pred(line); fail after timeout seconds."""
    result: dict = {}

    def reader():
        lines = []
        for line in stream:
            lines.append(line)
            if pred(line):
                result["line"] = line
                return
        result["eof"] = "".join(lines)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout)
    if "line" in result:
        return result["line"]
    if "eof" in result:
        raise RuntimeError(f"{what} exited early:\n{result['eof'][-2000:]}")
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def meta_path(out: Path) -> Path:
    return out.with_suffix(".json")


def existing_is_good(out: Path, min_packets: int, min_conns: int) -> dict | None:
    if not out.exists():
        return None
    mp = meta_path(out)
    meta = None
    if mp.exists():
        try:
            meta = json.loads(mp.read_text())
        except ValueError:
            meta = None
    if meta is None or meta.get("file_bytes") != out.stat().st_size:
        # no (matching) record of what is in there: count it
        meta = {"file_bytes": out.stat().st_size, "scan": scan_pcap(out)}
        mp.write_text(json.dumps(meta, indent=2) + "\n")
    scan = meta.get("scan", {})
    if scan.get("packets", 0) >= min_packets and scan.get("connections", 0) >= min_conns:
        return meta
    return None


def record(args) -> int:
    pid = os.getpid()
    ns_s, ns_c = f"tcpfsm-bench-s{pid}", f"tcpfsm-bench-c{pid}"
    if_s, if_c = f"tfb{pid}s", f"tfb{pid}c"          # <= 15 chars
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".{pid}.tmp")
    procs: dict[str, subprocess.Popen] = {}
    made_ns: list[str] = []
    made_link = False
    ok = False

    def on_term(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    t_start = time.perf_counter()
    try:
        for ns in (ns_s, ns_c):
            sh("ip", "netns", "add", ns)
            made_ns.append(ns)
        sh("ip", "link", "add", if_s, "type", "veth", "peer", "name", if_c)
        made_link = True
        for ifn in (if_s, if_c):
            disable_tx_csum_offload(ifn)
        sh("ip", "link", "set", if_s, "netns", ns_s)
        sh("ip", "link", "set", if_c, "netns", ns_c)
        made_link = False   # now owned by the namespaces; goes away with them
        for ns, ifn, ip in ((ns_s, if_s, SERVER_IP), (ns_c, if_c, CLIENT_IP)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", ifn)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", ifn, "up")

        procs["tcpdump"] = subprocess.Popen(
            ["ip", "netns", "exec", ns_s, "tcpdump", "-i", if_s, "-n", "-s", "128",
             "-B", "65536", "-Z", "root", "-w", str(tmp)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        read_line_until(procs["tcpdump"].stderr, lambda l: "listening on" in l, 20, "tcpdump")

        me = str(Path(__file__).resolve())
        server_cfg = {"server_ip": SERVER_IP, "ports": PORTS,
                      "workers_per_port": args.threads}
        procs["server"] = subprocess.Popen(
            ["ip", "netns", "exec", ns_s, sys.executable, me, "--_role", "server",
             "--_cfg", json.dumps(server_cfg)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        read_line_until(procs["server"].stdout, lambda l: l.startswith("READY"), 20, "server")

        client_cfg = {"server_ip": SERVER_IP, "ports": PORTS, "refused_port": REFUSED_PORT,
                      "connections": args.connections, "seconds": args.seconds,
                      "threads": args.threads, "seed": args.seed,
                      "max_open": args.max_open}
        print(f"recording: {ns_s} <-> {ns_c} via {if_s}/{if_c}, "
              f"up to {args.connections} connections or {args.seconds:g}s, "
              f"{args.threads} client threads ...", flush=True)
        t_traffic = time.perf_counter()
        procs["client"] = subprocess.Popen(
            ["ip", "netns", "exec", ns_c, sys.executable, me, "--_role", "client",
             "--_cfg", json.dumps(client_cfg)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = read_line_until(procs["client"].stdout, lambda l: l.startswith("DONE "),
                               args.seconds + 120, "client")
        traffic_s = time.perf_counter() - t_traffic
        stats = json.loads(line[5:])

        time.sleep(0.5)                       # let the last FIN/ACKs through
        td = procs.pop("tcpdump")
        td.send_signal(signal.SIGINT)
        try:
            _, td_err = td.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            td.kill()
            _, td_err = td.communicate()
        captured = dropped = None
        for l in td_err.splitlines():
            w = l.split()
            if l.endswith("packets captured"):
                captured = int(w[0])
            elif "dropped by kernel" in l:
                dropped = int(w[0])
        if td.returncode not in (0, -signal.SIGINT):
            raise RuntimeError(f"tcpdump exited {td.returncode}:\n{td_err[-2000:]}")

        scan = scan_pcap(tmp)
        os.replace(tmp, out)
        size = out.stat().st_size
        meta = {
            "file": str(out), "file_bytes": size, "scan": scan,
            "client": stats, "tcpdump_captured": captured,
            "tcpdump_dropped_by_kernel": dropped,
            "traffic_seconds": round(traffic_s, 2),
            "args": {"connections": args.connections, "seconds": args.seconds,
                     "threads": args.threads, "seed": args.seed,
                     "max_open": args.max_open},
        }
        ok = True
    finally:
        # Stop everything we started, by PID, then remove our namespaces.
        for name, p in procs.items():
            if p.poll() is None:
                try:
                    if p.stdin:
                        p.stdin.close()
                except OSError:
                    pass
                p.terminate()
        for name, p in procs.items():
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for ns in made_ns:
            r = sh("ip", "netns", "pids", ns, check=False)
            for spid in r.stdout.split():
                try:
                    os.kill(int(spid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for ns in made_ns:
            r = sh("ip", "netns", "del", ns, check=False)
            if r.returncode != 0:
                print(f"warning: could not delete netns {ns}: {r.stderr.strip()}",
                      file=sys.stderr)
        if made_link:
            sh("ip", "link", "del", if_s, check=False)
        if not ok and tmp.exists():
            tmp.unlink()

    total_s = time.perf_counter() - t_start
    meta["total_seconds"] = round(total_s, 2)
    meta_path(out).write_text(json.dumps(meta, indent=2) + "\n")

    print(f"client:      {stats['attempted']} connections in {stats['seconds']}s "
          f"({'time limit' if stats['hit_time_limit'] else 'count limit'})")
    print("             " + ", ".join(f"{k} {v}" for k, v in stats["by_kind"].items()))
    if stats["unexpected_by_kind"] or stats["errors"]:
        print(f"             unexpected outcomes: {stats['unexpected_by_kind']} "
              f"errors: {stats['errors']}")
    print(f"tcpdump:     {captured} captured, {dropped} dropped by kernel")
    print(f"packets:     {scan['packets']}")
    print(f"connections: {scan['connections']} (distinct client SYNs; "
          f"{scan['synack']} SYN/ACK, {scan['fin']} FIN, {scan['rst']} RST segments)")
    print(f"file:        {out} ({size / 1e6:.1f} MB)")
    print(f"seconds:     {total_s:.1f} total ({traffic_s:.1f} traffic)")
    if dropped:
        print(f"warning: tcpdump dropped {dropped} packets; the capture has gaps",
              file=sys.stderr)
    if scan["packets"] < args.min_packets or scan["connections"] < args.min_connections:
        print(f"error: capture is smaller than required ({args.min_packets} packets, "
              f"{args.min_connections} connections); raise --connections/--seconds",
              file=sys.stderr)
        meta_path(out).unlink()      # so the next run re-records
        return 1
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="pcap to write (%(default)s)")
    ap.add_argument("--force", action="store_true", help="re-record even if the capture is fine")
    ap.add_argument("--connections", type=int, default=26000,
                    help="stop after this many connections (%(default)s)")
    ap.add_argument("--seconds", type=float, default=150,
                    help="or after this many seconds of traffic (%(default)s)")
    ap.add_argument("--threads", type=int, default=24,
                    help="concurrent client connections (%(default)s)")
    ap.add_argument("--max-open", type=int, default=400,
                    help="cap on connections left open until the end (%(default)s)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--min-packets", type=int, default=1_000_000)
    ap.add_argument("--min-connections", type=int, default=20_000)
    ap.add_argument("--_role", choices=["server", "client"], help=argparse.SUPPRESS)
    ap.add_argument("--_cfg", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._role == "server":
        run_server(json.loads(args._cfg))
        return 0
    if args._role == "client":
        run_client(json.loads(args._cfg))
        return 0

    if not args.force:
        meta = existing_is_good(args.out, args.min_packets, args.min_connections)
        if meta:
            s = meta["scan"]
            print(f"{args.out}: up to date ({s['packets']} packets, {s['connections']} "
                  f"connections, {meta['file_bytes'] / 1e6:.1f} MB); --force to re-record")
            return 0
    if os.geteuid() != 0:
        print("error: recording needs root (ip netns, veth, tcpdump)", file=sys.stderr)
        return 1
    return record(args)


if __name__ == "__main__":
    sys.exit(main())
