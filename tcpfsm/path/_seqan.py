"""Sequence-analysis kernel: Wireshark's `tcp.analysis.*` flags for every segment, in capture order.

Owns the per-segment walk that needs the history of both directions of a conversation (what
Wireshark's `tcp_analyze_sequence_number` in epan/dissectors/packet-tcp.c does), plus what the same walk
yields for free: the handshake RTT (`tcp.analysis.initial_rtt`), RTT samples by Karn's rule,
retransmitted bytes, zero-window episodes, keep-alives and the options each side offered in its SYN;
and the 4-tuples' dense ids, by a hash table over their flow keys kept between batches (`intern_keys`);
and, for tcpfsm/path/flows.py, the conversations' counters summed per flow (`sum_by_flow`) and the RTT samples
per flow: their count, jitter sums and values grouped by flow, sorted (`rtt_by_flow`).
Must not: allocate, know about flows of the tracker, or render. The wrapper (tcpfsm/path/segments.py)
owns the capacity of the key table and of the state arrays, the cap on conversations and the meaning of
the outputs.

The flags are tested in Wireshark's order, each rule stated above the code that tests it, because the
order decides which flag wins (a keep-alive is never a retransmission; a fast retransmission is never
out-of-order). Sequence comparisons are modulo 2**32 as there (GT_SEQ, LT_SEQ, LE_SEQ), and Wireshark's
quirks are kept on purpose: 0 stands for "no next sequence number yet", a direction that has not sent
yet has a window of 2**32-1.

Conversations: one per 4-tuple, and a new one when a SYN without ACK carries another sequence number
than the first one of its direction (Wireshark's "reused ports"). Every state row is indexed by
conversation slot (`cs`) or conversation-direction slot (`ds`, 2 * slot + direction, direction 1 = the
segment's source is the key's lower side).

Cython pure-Python mode (see tcpfsm/capture/_decode.py for the rules): compiled by setup.py into
`tcpfsm.path._seqan_c`; tcpfsm/_kernels.py picks which one runs. Every integer is a declared C type;
sequence numbers are held in 64-bit signed integers and masked to 32 bits. The module's numbers (columns, flag
bits, masks) are declared `cython.const`: C constants the compiler folds into the code, where a plain declared
global is a variable read at every use (the walk ran 15% slower so).
"""
import cython

if cython.compiled:
    from cython.cimports.libc.string import memcmp

# Analysis bits, in the order of the names (tcp.analysis.<name>). As in tshark's fields, a fast or spurious
# retransmission is also a retransmission (both bits set).
A_RETRANSMISSION = cython.declare(cython.const[cython.uint], 1 << 0)
A_FAST_RETRANSMISSION = cython.declare(cython.const[cython.uint], 1 << 1)
A_SPURIOUS_RETRANSMISSION = cython.declare(cython.const[cython.uint], 1 << 2)
A_OUT_OF_ORDER = cython.declare(cython.const[cython.uint], 1 << 3)
A_LOST_SEGMENT = cython.declare(cython.const[cython.uint], 1 << 4)
A_ACK_LOST_SEGMENT = cython.declare(cython.const[cython.uint], 1 << 5)
A_DUPLICATE_ACK = cython.declare(cython.const[cython.uint], 1 << 6)
A_ZERO_WINDOW = cython.declare(cython.const[cython.uint], 1 << 7)
A_ZERO_WINDOW_PROBE = cython.declare(cython.const[cython.uint], 1 << 8)
A_ZERO_WINDOW_PROBE_ACK = cython.declare(cython.const[cython.uint], 1 << 9)
A_WINDOW_FULL = cython.declare(cython.const[cython.uint], 1 << 10)
A_WINDOW_UPDATE = cython.declare(cython.const[cython.uint], 1 << 11)
A_KEEP_ALIVE = cython.declare(cython.const[cython.uint], 1 << 12)
A_KEEP_ALIVE_ACK = cython.declare(cython.const[cython.uint], 1 << 13)
A_REUSED_PORTS = cython.declare(cython.const[cython.uint], 1 << 14)
ANALYSIS_NAMES = ("retransmission", "fast_retransmission", "spurious_retransmission", "out_of_order",
                  "lost_segment", "ack_lost_segment", "duplicate_ack", "zero_window", "zero_window_probe",
                  "zero_window_probe_ack", "window_full", "window_update", "keep_alive", "keep_alive_ack",
                  "reused_ports")

# TCP flag bits (as in tcpfsm.capture.batch)
F_FIN = cython.declare(cython.const[cython.int], 0x01)
F_SYN = cython.declare(cython.const[cython.int], 0x02)
F_RST = cython.declare(cython.const[cython.int], 0x04)
F_ACK = cython.declare(cython.const[cython.int], 0x10)

M32 = cython.declare(cython.const[cython.longlong], 0xFFFFFFFF)
# (declared: a literal above 2**31 in an expression makes it Python-object arithmetic)
_HALF32 = cython.declare(cython.const[cython.longlong], 0x80000000)
_TWO32 = cython.declare(cython.const[cython.longlong], 0x100000000)
FAST_RETRANS_NS = cython.declare(cython.const[cython.longlong], 20000000)   # a fast retransmission follows the dup ACKs within 20 ms
OOO_DEFAULT_NS = cython.declare(cython.const[cython.longlong], 3000000)     # out-of-order window before the handshake RTT is known

# Columns of the conversation-direction state `ds` (int64).
D_BASESET = cython.declare(cython.const[cython.int], 0)    # base sequence number known
D_BASE = cython.declare(cython.const[cython.int], 1)       # base (ISN, or first seq - 1): relative numbers
D_WINDOW = cython.declare(cython.const[cython.int], 2)     # last raw window (2**32-1 before the first segment)
D_WSCALE = cython.declare(cython.const[cython.int], 3)     # -1 unknown, -2 not in use, else the shift
D_NEXTSEQ = cython.declare(cython.const[cython.int], 4)    # highest next sequence number seen (0 = none)
D_NEXTSEQTIME = cython.declare(cython.const[cython.int], 5)
D_LASTACK = cython.declare(cython.const[cython.int], 6)
D_LASTACKTIME = cython.declare(cython.const[cython.int], 7)
D_DUPACKS = cython.declare(cython.const[cython.int], 8)
D_MAXSEQTOBEACKED = cython.declare(cython.const[cython.int], 9)
D_LASTFLAGS = cython.declare(cython.const[cython.int], 10)  # analysis bits of its last segment
D_TIMED_END = cython.declare(cython.const[cython.int], 11)  # Karn: the segment being timed ends here ...
D_TIMED_TS = cython.declare(cython.const[cython.int], 12)   # ... and was sent then (-1: nothing timed)
D_ZW_SINCE = cython.declare(cython.const[cython.int], 13)   # zero window advertised since (-1: window open)
D_ZW_SEGMENTS = cython.declare(cython.const[cython.int], 14)
D_ZW_NS = cython.declare(cython.const[cython.int], 15)
D_RETX_SEGMENTS = cython.declare(cython.const[cython.int], 16)
D_RETX_BYTES = cython.declare(cython.const[cython.int], 17)
D_KEEPALIVES = cython.declare(cython.const[cython.int], 18)
D_MSS = cython.declare(cython.const[cython.int], 19)        # from its SYN: 0 absent / no SYN
D_SYN_WSCALE = cython.declare(cython.const[cython.int], 20) # from its SYN: -1 absent
D_SACK = cython.declare(cython.const[cython.int], 21)       # from its SYN: 1 SACK permitted
D_TSOPT = cython.declare(cython.const[cython.int], 22)      # from its SYN: 1 timestamps
D_SYNS = cython.declare(cython.const[cython.int], 23)       # SYN (or SYN+ACK) segments it sent
D_SEGMENTS = cython.declare(cython.const[cython.int], 24)
D_FIRST_ZW_PACKET = cython.declare(cython.const[cython.int], 25)   # first zero-window segment (packet index, 0 none)
D_DATA_SEGMENTS = cython.declare(cython.const[cython.int], 26)     # segments carrying data ...
D_RETX_DATA = cython.declare(cython.const[cython.int], 27)         # ... and those of them retransmitted
D_COLS = cython.declare(cython.const[cython.int], 28)
# The same columns for Python (the compiled module exports no C constants); tests check the order.
DS_COLUMNS = ("baseset", "base", "window", "wscale", "nextseq", "nextseqtime", "lastack", "lastacktime",
              "dupacks", "maxseqtobeacked", "lastflags", "timed_end", "timed_ts", "zw_since", "zw_segments",
              "zw_ns", "retx_segments", "retx_bytes", "keepalives", "mss", "syn_wscale", "sack", "tsopt",
              "syns", "segments", "first_zw_packet", "data_segments", "retx_data")

# Columns of the conversation state `cs` (int64).
C_KEY = cython.declare(cython.const[cython.int], 0)          # dense 4-tuple id
C_FIRST_PACKET = cython.declare(cython.const[cython.int], 1)
C_FIRST_TS = cython.declare(cython.const[cython.int], 2)
C_LAST_TS = cython.declare(cython.const[cython.int], 3)
C_MRU_SYN = cython.declare(cython.const[cython.int], 4)      # time of the most recent SYN (0 none)
C_SYN_DIR = cython.declare(cython.const[cython.int], 5)      # direction of that SYN (-1 none)
C_FIRST_RTT = cython.declare(cython.const[cython.int], 6)    # handshake RTT, ns (0 not yet)
C_RTT_PACKET = cython.declare(cython.const[cython.int], 7)   # the ACK that completed it
C_MRU_SYNACK = cython.declare(cython.const[cython.int], 8)   # the most recent SYN+ACK before the handshake ACK (0 none)
C_SYNACK_LEG = cython.declare(cython.const[cython.int], 9)   # SYN -> SYN+ACK at the tap (-1 unknown)
C_ACK_LEG = cython.declare(cython.const[cython.int], 10)     # SYN+ACK -> ACK at the tap (-1 unknown)
C_SYNACK_AFTER = cython.declare(cython.const[cython.int], 11)   # SYN+ACKs seen after the handshake completed
C_SYNACK_AFTER_PACKET = cython.declare(cython.const[cython.int], 12)
C_FIRST_SYN_TS = cython.declare(cython.const[cython.int], 13)   # first SYN (connect latency with retries)
C_MAX_GAP = cython.declare(cython.const[cython.int], 14)        # longest silence between two of its segments (ns) ...
C_MAX_GAP_PACKET = cython.declare(cython.const[cython.int], 15) # ... ended by this packet
C_COLS = cython.declare(cython.const[cython.int], 16)
CS_COLUMNS = ("key", "first_packet", "first_ts", "last_ts", "mru_syn", "syn_dir", "first_rtt", "rtt_packet",
              "mru_synack", "synack_leg", "ack_leg", "synack_after", "synack_after_packet", "first_syn_ts",
              "max_gap", "max_gap_packet")


# Flow keys (36 bytes, tcpfsm.capture.keys) read as 9 little-endian 32-bit words (`KEY_WORDS`, a constant: the
# compiler unrolls the loops over them) and hashed multilinearly: the sum of each word times its own
# odd 64-bit constant (independent products: no chain of multiplications as FNV's, 1/3 faster here), then one
# multiply-xorshift round; C arithmetic wraps at 2**64, the uncompiled module masks its Python ints to the
# same values (literals below 2**63: a larger one would not convert)
KEY_WORDS = cython.declare(cython.const[cython.int], 9)
_K0 = cython.declare(cython.const[cython.ulonglong], 0x1E3779B97F4A7C15)
_K_STEP = cython.declare(cython.const[cython.ulonglong], 0x3C6EF372FE94F82A)
_MIX = cython.declare(cython.const[cython.ulonglong], 0x2545F4914F6CDD1D)


@cython.ccall
@cython.boundscheck(False)
@cython.wraparound(False)
def intern_keys(keys: cython.const[cython.uint][:, ::1], table: cython.longlong[::1],
                stored: cython.uint[:, ::1], nkeys: cython.longlong, grow: cython.bint, missing: cython.longlong,
                out: cython.longlong[::1]) -> cython.longlong:
    """The dense id of each row's flow key (`keys[i, :9]`, its 36 bytes as 32-bit words), ids numbered in
    order of first appearance over every call: `table` (open addressing, a power of two of slots, -1 empty, at
    least twice as many as the keys it will hold) maps the keys `stored[:nkeys]` to their ids (their rows
    there). A key not stored yet is stored with the next id when `grow`, else gets `missing`. Returns the
    number of keys stored after. Also rebuilds a table: `keys` = `stored[:nkeys]`, an empty `table`, nkeys 0,
    `grow` (each key is stored again where it was)."""
    n: cython.Py_ssize_t = keys.shape[0]
    mask: cython.longlong = table.shape[0] - 1
    i: cython.Py_ssize_t
    j: cython.int
    g: cython.longlong
    s: cython.longlong
    h: cython.ulonglong
    c: cython.ulonglong
    diff: cython.uint
    same: cython.bint
    with cython.nogil:                 # (plain C over the arrays: the reader thread lets the tracker run)
        for i in range(n):
            # a segment of the same 4-tuple as the row before (half of them, in bulk transfers) has its id
            if i > 0:
                if cython.compiled:             # (libc's memcmp of the 36 bytes: a third fewer instructions than words)
                    same = memcmp(cython.address(keys[i, 0]), cython.address(keys[i - 1, 0]), 4 * KEY_WORDS) == 0
                else:
                    diff = 0
                    for j in range(KEY_WORDS):
                        diff |= keys[i, j] ^ keys[i - 1, j]
                    same = diff == 0
                if same:
                    out[i] = out[i - 1]
                    continue
            h = 0
            c = _K0
            for j in range(KEY_WORDS):                      # each word times its own odd constant, summed
                h += cython.cast(cython.ulonglong, keys[i, j]) * c
                c += _K_STEP
                if not cython.compiled:
                    h &= (1 << 64) - 1
                    c &= (1 << 64) - 1
            # a product carries only upward: fold the high bits into the low ones the slot is taken from
            h ^= h >> 32
            h *= _MIX
            if not cython.compiled:
                h &= (1 << 64) - 1
            h ^= h >> 29
            s = cython.cast(cython.longlong, h & cython.cast(cython.ulonglong, mask))
            while True:
                g = table[s]
                if g < 0:                           # not stored yet
                    if grow:
                        g = nkeys
                        nkeys += 1
                        table[s] = g
                        for j in range(KEY_WORDS):
                            stored[g, j] = keys[i, j]
                    else:
                        g = missing
                    break
                if cython.compiled:
                    same = memcmp(cython.address(stored[g, 0]), cython.address(keys[i, 0]), 4 * KEY_WORDS) == 0
                else:
                    diff = 0
                    for j in range(KEY_WORDS):
                        diff |= stored[g, j] ^ keys[i, j]
                    same = diff == 0
                if same:
                    break
                s = (s + 1) & mask
            out[i] = g
    return nkeys


@cython.ccall
@cython.boundscheck(False)
@cython.wraparound(False)
def sum_by_flow(ds: cython.const[cython.longlong][:, ::1], rows: cython.const[cython.longlong][::1],
                flow: cython.const[cython.longlong][::1], cols: cython.const[cython.longlong][::1],
                out: cython.longlong[:, ::1]) -> cython.void:
    """Per flow, the sums of the state rows' columns: out[j, flow[i]] += ds[rows[i], cols[j]] for every i and
    j (`out`: zeros in, a row per column, a column per flow) -- one pass where numpy gathers and scatters
    each column."""
    n: cython.Py_ssize_t = rows.shape[0]
    m: cython.Py_ssize_t = cols.shape[0]
    i: cython.Py_ssize_t
    j: cython.Py_ssize_t
    r: cython.longlong
    f: cython.longlong
    for i in range(n):
        r = rows[i]
        f = flow[i]
        for j in range(m):
            out[j, f] += ds[r, cols[j]]


@cython.ccall
@cython.boundscheck(False)
@cython.wraparound(False)
def rtt_by_flow(conv: cython.const[cython.longlong][::1], rtt: cython.const[cython.longlong][::1],
                packet: cython.const[cython.longlong][::1], conv_flow: cython.const[cython.longlong][::1],
                count: cython.longlong[::1], total: cython.double[::1], at: cython.longlong[::1],
                out: cython.longlong[::1], sort_run: cython.longlong) -> cython.bint:
    """The RTT samples (each one's conversation, RTT and acknowledging packet) per flow (`conv_flow`: each
    conversation's, 0 <= flow < len(count); -1: none, its samples left out), in time order: how many
    (`count`, zeros in); the sum of the absolute differences of consecutive ones (`total`, zeros in), each
    difference taken between the samples as floats and added in time order (the float sums of numpy's
    `np.add.at(total, flow, abs(diff))` over the samples grouped by flow); and the samples grouped by flow,
    flows in order (`out`, its first sum(count) rows), each flow's sorted when it has at most `sort_run` of
    them (the wrapper sorts the longer runs). `at`: scratch, one per flow. Returns False, having written
    nothing, when the samples are not in packet order (the wrapper orders them first)."""
    n: cython.Py_ssize_t = conv.shape[0]
    m: cython.Py_ssize_t = count.shape[0]
    i: cython.Py_ssize_t
    j: cython.Py_ssize_t
    k: cython.Py_ssize_t
    f: cython.longlong
    first: cython.longlong
    pos: cython.longlong = 0
    v: cython.longlong
    for i in range(1, n):
        if packet[i] < packet[i - 1]:
            return False
    for i in range(n):                          # counts and jitter sums; `at`: each flow's previous sample
        f = conv_flow[conv[i]]
        if f < 0:
            continue
        if count[f] > 0:
            total[f] += abs(cython.cast(cython.double, rtt[i]) - cython.cast(cython.double, at[f]))
        at[f] = rtt[i]
        count[f] += 1
    for f in range(m):                          # `at`: where each flow's run starts
        at[f] = pos
        pos += count[f]
    for i in range(n):                          # each sample into its flow's run; `at` ends at the run's end
        f = conv_flow[conv[i]]
        if f >= 0:
            out[at[f]] = rtt[i]
            at[f] += 1
    for f in range(m):                          # short runs sorted in place (insertion: a few samples each)
        if count[f] < 2 or count[f] > sort_run:
            continue
        first = at[f] - count[f]
        for j in range(first + 1, at[f]):
            v = out[j]
            k = j - 1
            while k >= first and out[k] > v:
                out[k + 1] = out[k]
                k -= 1
            out[k + 1] = v
    return True


@cython.cfunc
@cython.nogil
@cython.inline
@cython.exceptval(check=False)
def _sd(a: cython.longlong, b: cython.longlong) -> cython.longlong:
    """a - b as a signed 32-bit sequence distance (GT_SEQ(a, b) is _sd(a, b) > 0)."""
    d: cython.longlong = (a - b) & M32
    if d >= _HALF32:
        d -= _TWO32
    return d


@cython.cfunc
@cython.nogil
@cython.boundscheck(False)
@cython.wraparound(False)
@cython.exceptval(check=False)
def _reset(ds: cython.longlong[:, ::1], cs: cython.longlong[:, ::1], c: cython.longlong) -> cython.void:
    j: cython.int
    r: cython.longlong
    for r in range(2 * c, 2 * c + 2):
        for j in range(D_COLS):
            ds[r, j] = 0
        ds[r, D_WINDOW] = M32
        ds[r, D_WSCALE] = -1
        ds[r, D_TIMED_TS] = -1
        ds[r, D_ZW_SINCE] = -1
        ds[r, D_SYN_WSCALE] = -1
    for j in range(C_COLS):
        cs[c, j] = 0
    cs[c, C_SYN_DIR] = -1
    cs[c, C_SYNACK_LEG] = -1
    cs[c, C_ACK_LEG] = -1


@cython.ccall
@cython.boundscheck(False)
@cython.wraparound(False)
def analyze(key: cython.const[cython.longlong][::1], lo: cython.const[cython.uchar][::1],
            index: cython.const[cython.longlong][::1], ts: cython.const[cython.longlong][::1],
            flags: cython.const[cython.ushort][::1], seq: cython.const[cython.uint][::1],
            ack: cython.const[cython.uint][::1], win: cython.const[cython.ushort][::1],
            plen: cython.const[cython.uint][::1], mss: cython.const[cython.ushort][::1],
            wscale: cython.const[cython.schar][::1], sack_ok: cython.const[cython.uchar][::1],
            has_ts: cython.const[cython.uchar][::1], ttl: cython.const[cython.uchar][::1],
            conv_of_key: cython.longlong[::1], ds: cython.longlong[:, ::1], cs: cython.longlong[:, ::1],
            ttl_max: cython.short[::1],
            nconv: cython.longlong, max_conv: cython.longlong,
            out_conv: cython.longlong[::1], out_bits: cython.uint[::1], out_dupnum: cython.uint[::1],
            rtt_conv: cython.longlong[::1], rtt_lo: cython.uchar[::1], rtt_ns: cython.longlong[::1],
            rtt_packet: cython.longlong[::1], rtt_held: cython.longlong[::1]) -> cython.longlong:
    """Analyse rows in capture order; returns the number of conversation slots in use afterwards.

    In: per row its dense key id, whether its source is the key's lower side, packet index, time (ns) and
    header fields, and the TTL / hop limit (or no rows: not known). State: conv_of_key (current slot per key
    id, -1 none), ds / cs (capacity for at least `nconv` + rows slots, or `max_conv`), ttl_max (per ds row:
    the highest TTL seen, -1 none). A row that would open a conversation beyond `max_conv` is not
    analysed (conversation -1, no bits). Out per row: conversation slot, analysis bits, duplicate-ACK number.
    Out per RTT sample a row's acknowledgement closes (Karn: never a retransmitted segment's), appended
    after the `rtt_held[0]` samples the rtt_* arrays hold (room for one a row), which it then counts: the
    conversation, whether the acker is the key's lower side, the RTT (ns) and the acknowledging packet."""
    n: cython.Py_ssize_t = len(key)
    i: cython.Py_ssize_t
    c: cython.longlong
    fwd: cython.longlong
    rev: cython.longlong
    pF: cython.p_longlong             # ds[fwd], ds[rev], cs[c]: see below
    pR: cython.p_longlong
    pC: cython.p_longlong
    d: cython.int
    fl: cython.int
    s: cython.longlong
    a: cython.longlong
    w: cython.longlong
    ln: cython.longlong
    now: cython.longlong
    ta: cython.uint
    nxt: cython.longlong
    sna: cython.bint
    ctl: cython.bint
    t: cython.longlong
    thres: cython.longlong
    shift: cython.longlong
    dup: cython.longlong
    new_next: cython.longlong
    same: cython.bint
    fresh: cython.bint
    has_ttl: cython.bint = ttl.shape[0] > 0
    nrtt: cython.Py_ssize_t = rtt_held[0]
    with cython.nogil:                 # (plain C over the arrays: the reader thread lets the tracker run)
        for i in range(n):
            # (casts: C integers when compiled; plain Python ints uncompiled, where numpy's unsigned scalars
            # would wrap and warn)
            fl = cython.cast(cython.int, flags[i])
            s = cython.cast(cython.longlong, seq[i])
            a = cython.cast(cython.longlong, ack[i])
            w = cython.cast(cython.longlong, win[i])
            ln = cython.cast(cython.longlong, plen[i])
            now = cython.cast(cython.longlong, ts[i])
            d = 1 if lo[i] else 0                 # (a C int; plain Python must not do uint8 arithmetic)
            ta = 0
            c = conv_of_key[key[i]]
            if c >= 0 and (fl & (F_SYN | F_ACK)) == F_SYN and ds[2 * c + d, D_BASESET] and s != ds[2 * c + d, D_BASE]:
                c = -1                                  # reused ports: a new conversation on this 4-tuple
                ta |= A_REUSED_PORTS
            fresh = c < 0
            if fresh:
                if nconv >= max_conv:               # the cap on conversations kept: this one is not analysed
                    out_conv[i] = -1
                    out_bits[i] = 0
                    out_dupnum[i] = 0
                    continue
                c = nconv
                nconv += 1
                _reset(ds, cs, c)
                conv_of_key[key[i]] = c
            fwd = 2 * c + d
            rev = 2 * c + 1 - d
            # the three state rows this segment reads and writes, by their addresses when compiled (computed once
            # here: indexing the 2-D arrays each time reloads their base and stride, which the compiler cannot keep
            # in registers in this long loop: 16% fewer instructions on the bench capture) and as row views uncompiled
            if cython.compiled:
                pF = cython.address(ds[fwd, 0])
                pR = cython.address(ds[rev, 0])
                pC = cython.address(cs[c, 0])
            else:
                pF, pR, pC = ds[fwd], ds[rev], cs[c]
            if fresh:
                pC[C_KEY] = key[i]
                pC[C_FIRST_PACKET] = index[i]
                pC[C_FIRST_TS] = now
            elif now - pC[C_LAST_TS] > pC[C_MAX_GAP]:
                pC[C_MAX_GAP] = now - pC[C_LAST_TS]
                pC[C_MAX_GAP_PACKET] = index[i]
            pC[C_LAST_TS] = now
            pF[D_SEGMENTS] += 1
            if has_ttl and ttl[i] > ttl_max[fwd]:   # the highest TTL / hop limit of each direction
                ttl_max[fwd] = ttl[i]
            ctl = (fl & (F_SYN | F_FIN | F_RST)) != 0

            # the base sequence numbers: a SYN's own, else one before the first seen; the peer's from the
            # first ACK (ack - 1)
            if not pF[D_BASESET]:
                pF[D_BASE] = s if fl & F_SYN else (s - 1) & M32
                pF[D_BASESET] = 1
            if not pR[D_BASESET] and fl & F_ACK:
                pR[D_BASE] = (a - 1) & M32
                pR[D_BASESET] = 1

            # the handshake: the most recent SYN, and the first ACK without SYN after it closes the initial RTT
            if fl & F_SYN:
                pF[D_SYNS] += 1
                if not fl & F_ACK:
                    if pC[C_FIRST_SYN_TS] == 0:
                        pC[C_FIRST_SYN_TS] = now
                    pC[C_MRU_SYN] = now
                    pC[C_SYN_DIR] = d
                elif pC[C_FIRST_RTT] == 0:
                    pC[C_MRU_SYNACK] = now
                elif pC[C_MRU_SYNACK] != 0 and s == pF[D_BASE] and now > pC[C_MRU_SYN] + pC[C_FIRST_RTT]:
                    # the same SYN+ACK again, after the handshake ACK: the server ignored that ACK
                    pC[C_SYNACK_AFTER] += 1
                    if pC[C_SYNACK_AFTER_PACKET] == 0:
                        pC[C_SYNACK_AFTER_PACKET] = index[i]
            elif fl & F_ACK and pC[C_FIRST_RTT] == 0 and pC[C_MRU_SYN] != 0:
                pC[C_FIRST_RTT] = now - pC[C_MRU_SYN]
                pC[C_RTT_PACKET] = index[i]
                if pC[C_MRU_SYNACK] != 0:
                    pC[C_SYNACK_LEG] = pC[C_MRU_SYNACK] - pC[C_MRU_SYN]
                    pC[C_ACK_LEG] = now - pC[C_MRU_SYNACK]

            nxt = pF[D_NEXTSEQ]
            # ZERO WINDOW PROBE: exactly one byte at the next expected sequence number while the peer's
            # window is zero
            if ln == 1 and s == nxt and pR[D_WINDOW] == 0:
                ta |= A_ZERO_WINDOW_PROBE
            else:
                # ZERO WINDOW: window 0 on a segment without SYN, FIN or RST
                if w == 0 and not ctl:
                    ta |= A_ZERO_WINDOW
                # LOST SEGMENT: beyond the highest next sequence number seen (a gap), RST excepted
                if nxt != 0 and _sd(s, nxt) > 0 and not fl & F_RST:
                    ta |= A_LOST_SEGMENT
                # KEEP ALIVE: 0 or 1 byte one before the next expected sequence number
                if (ln == 0 or ln == 1) and s == ((nxt - 1) & M32) and not ctl:
                    ta |= A_KEEP_ALIVE
                # WINDOW UPDATE: no data, same seq/ack as before, another (non-zero) window
                if ln == 0 and w != 0 and w != pF[D_WINDOW] and s == nxt and a == pF[D_LASTACK] and not ctl:
                    ta |= A_WINDOW_UPDATE
                # WINDOW FULL: data reaching exactly the right edge of the peer's advertised window (its scale
                # known)
                if ln > 0 and pR[D_WSCALE] != -1 and not ctl:
                    shift = 0 if pR[D_WSCALE] == -2 else pR[D_WSCALE]
                    if ((s + ln) & M32) == ((pR[D_LASTACK] + ((pR[D_WINDOW] << shift) & M32)) & M32):
                        ta |= A_WINDOW_FULL
                same = ln == 0 and s == nxt and a == pF[D_LASTACK] and not ctl and w == pF[D_WINDOW]
                # KEEP ALIVE ACK: repeats the previous ACK right after the peer's keep-alive
                if same and w != 0 and pR[D_LASTFLAGS] & A_KEEP_ALIVE:
                    ta |= A_KEEP_ALIVE_ACK
                # ZERO WINDOW PROBE ACK: repeats the previous (zero-window) ACK right after the peer's probe
                elif same and w == 0 and pR[D_LASTFLAGS] & A_ZERO_WINDOW_PROBE:
                    ta |= A_ZERO_WINDOW_PROBE_ACK
                # DUPLICATE ACK: no data, same window, seq and ack as the previous segment
                elif same and w != 0:
                    # (-1 is the mark an "ACKed unseen segment" left: it counts as the first duplicate)
                    pF[D_DUPACKS] = 1 if pF[D_DUPACKS] == -1 else pF[D_DUPACKS] + 1
                    ta |= A_DUPLICATE_ACK
                    out_dupnum[i] = pF[D_DUPACKS]
            if not ta & A_DUPLICATE_ACK:
                out_dupnum[i] = 0
            # a new acknowledgement number restarts the duplicate count
            if a != pF[D_LASTACK]:
                pF[D_DUPACKS] = 0

            # ACKED LOST SEGMENT: acknowledges beyond what the peer was seen to send
            # once per unseen segment: the mark moves up to the peer's next sequence number (compared as plain
            # unsigned numbers, as there); when it cannot, a -1 duplicate count in the peer's direction keeps
            # the pure ACKs that follow from repeating it
            if pR[D_MAXSEQTOBEACKED] != 0 and _sd(a, pR[D_MAXSEQTOBEACKED]) > 0 and fl & F_ACK:
                if pR[D_MAXSEQTOBEACKED] > pR[D_NEXTSEQ]:
                    pR[D_MAXSEQTOBEACKED] = pR[D_NEXTSEQ]
                    ta |= A_ACK_LOST_SEGMENT
                else:
                    if pR[D_DUPACKS] == 0:
                        ta |= A_ACK_LOST_SEGMENT
                    pR[D_DUPACKS] = -1

            # RETRANSMISSION / FAST RETRANSMISSION / OUT-OF-ORDER / SPURIOUS: data (or SYN/FIN) that does not
            # advance the sequence space; a keep-alive is none of them
            if (ln > 0 or fl & (F_SYN | F_FIN)) and not ta & A_KEEP_ALIVE:
                sna = nxt != 0 and _sd(s, nxt) < 0
                # more than one byte starting one before nextseq: new data after a probe, not a retransmission
                if ln > 1 and ((nxt - 1) & M32) == s:
                    sna = False
                t = now - pR[D_LASTACKTIME]
                thres = pC[C_FIRST_RTT] if pC[C_FIRST_RTT] != 0 else OOO_DEFAULT_NS
                # spurious: every byte of it was already acknowledged (tested first, even past the rule above)
                if ln > 0 and pR[D_LASTACK] != 0 and _sd((s + ln) & M32, pR[D_LASTACK]) <= 0:
                    ta |= A_SPURIOUS_RETRANSMISSION | A_RETRANSMISSION
                # fast: the peer sent >= 2 duplicate ACKs for exactly this sequence number, within 20 ms
                elif sna and pR[D_DUPACKS] >= 2 and pR[D_LASTACK] == s and t < FAST_RETRANS_NS:
                    ta |= A_FAST_RETRANSMISSION | A_RETRANSMISSION
                # out-of-order: soon (under the handshake RTT) after the highest segment, and not ending there
                elif sna and now - pF[D_NEXTSEQTIME] < thres \
                        and nxt != ((s + ln + (1 if fl & (F_SYN | F_FIN) else 0)) & M32):
                    ta |= A_OUT_OF_ORDER
                elif sna:
                    ta |= A_RETRANSMISSION

            # the highest next sequence number (a zero-window probe does not advance it)
            new_next = (s + ln + (1 if fl & (F_SYN | F_FIN) else 0)) & M32
            if (_sd(new_next, nxt) > 0 or nxt == 0) and not ta & A_ZERO_WINDOW_PROBE:
                pF[D_NEXTSEQ] = new_next
                pF[D_NEXTSEQTIME] = now
            if (s == pF[D_MAXSEQTOBEACKED] or pF[D_MAXSEQTOBEACKED] == 0) and not ta & A_ZERO_WINDOW_PROBE:
                pF[D_MAXSEQTOBEACKED] = pF[D_NEXTSEQ]
            pF[D_WINDOW] = w
            pF[D_LASTACK] = a
            pF[D_LASTACKTIME] = now
            pF[D_LASTFLAGS] = ta

            # the SYN's options: window scaling in use only when both SYNs offer it (Wireshark's rule)
            if fl & F_SYN:
                pF[D_MSS] = mss[i]
                pF[D_SYN_WSCALE] = wscale[i]
                pF[D_SACK] = sack_ok[i]
                pF[D_TSOPT] = has_ts[i]
                if wscale[i] >= 0:                  # RFC 7323 2.3: a shift above 14 is used as 14
                    pF[D_WSCALE] = wscale[i] if wscale[i] <= 14 else 14
                if pF[D_WSCALE] == -1:
                    pF[D_WSCALE] = -2
                    pR[D_WSCALE] = -2
                elif fl & F_ACK and pR[D_WSCALE] == -2:
                    pF[D_WSCALE] = -2

            # per-direction counts: retransmitted segments and bytes, keep-alives, zero-window episodes
            if ta & (A_RETRANSMISSION | A_FAST_RETRANSMISSION | A_SPURIOUS_RETRANSMISSION):
                pF[D_RETX_SEGMENTS] += 1
                pF[D_RETX_BYTES] += ln
                if ln > 0:
                    pF[D_RETX_DATA] += 1
            if ln > 0:
                pF[D_DATA_SEGMENTS] += 1
            if ta & A_KEEP_ALIVE:
                pF[D_KEEPALIVES] += 1
            if ta & A_ZERO_WINDOW:
                pF[D_ZW_SEGMENTS] += 1
                if pF[D_FIRST_ZW_PACKET] == 0:
                    pF[D_FIRST_ZW_PACKET] = index[i]
                if pF[D_ZW_SINCE] < 0:
                    pF[D_ZW_SINCE] = now
            elif w != 0 and pF[D_ZW_SINCE] >= 0 and not fl & F_RST:
                pF[D_ZW_NS] += now - pF[D_ZW_SINCE]
                pF[D_ZW_SINCE] = -1

            # RTT by Karn's rule: time one segment at a time; a retransmission cancels the timing (its ACK
            # would be ambiguous); the first ACK from the peer covering the timed segment closes the sample
            if fl & F_ACK and pR[D_TIMED_TS] >= 0 and _sd(a, pR[D_TIMED_END]) >= 0:
                rtt_conv[nrtt] = c
                rtt_lo[nrtt] = d
                rtt_ns[nrtt] = now - pR[D_TIMED_TS]
                rtt_packet[nrtt] = index[i]
                nrtt += 1
                pR[D_TIMED_TS] = -1
            if ln > 0 or fl & (F_SYN | F_FIN):
                if ta & (A_RETRANSMISSION | A_FAST_RETRANSMISSION | A_SPURIOUS_RETRANSMISSION | A_OUT_OF_ORDER
                         | A_KEEP_ALIVE | A_ZERO_WINDOW_PROBE) or (fl & F_SYN and pF[D_SYNS] > 1):
                    pF[D_TIMED_TS] = -1
                elif pF[D_TIMED_TS] < 0 and not fl & F_RST:
                    pF[D_TIMED_END] = new_next
                    pF[D_TIMED_TS] = now
            out_conv[i] = c
            out_bits[i] = ta
    rtt_held[0] = nrtt
    return nconv
