"""Link types: their names, and the scalar decoding of the framings beyond the kernel's common ones.

Owns: the table of link-type names (`name`, `unsupported_warning`, the one line a capture gets per
unsupported link type), the set of link types handed to the scalar path (`SLOW_LINKTYPES`), and the
decoding of those framings down to the network layer (`link_other`): FDDI, IEEE 802.11 data frames
(bare, under radiotap or PPI; QoS and 4-address headers; protected frames are "encrypted"), PPP
(DLT_PPP, PPP in HDLC-like framing, PPPoE without Ethernet), Cisco HDLC, Linux NFLOG (its TLVs), and
802.2 LLC/SNAP (`llc_snap`, also used by reader._parse_net for 802.3 length frames on any Ethernet).
Must not: decode IP or anything above it (reader._parse_net does), read files, or keep state.

Each decoder returns (offset of the network layer, ethertype) - so the caller's network-layer code is
the same whatever the link - or a skip reason (a key of reader.SKIP_REASONS). Field layouts are from
the tcpdump.org link-type registry and the IEEE/IETF documents named at each function; the
expectation is Wireshark's (tests compare with `tshark -T fields` on captures/links/).
"""
from __future__ import annotations

import struct

__all__ = ["NAMES", "SLOW_LINKTYPES", "name", "unsupported_warning", "link_other", "llc_snap"]

# LINKTYPE_* names (tcpdump.org/linktypes.html) for the numbers a user is likely to meet.
NAMES = {
    0: "NULL", 1: "ETHERNET", 3: "AX25", 6: "IEEE802_5", 7: "ARCNET_BSD", 8: "SLIP", 9: "PPP", 10: "FDDI",
    12: "RAW (OpenBSD)", 14: "RAW (BSD/OS)", 50: "PPP_HDLC", 51: "PPP_ETHER", 100: "ATM_RFC1483", 101: "RAW",
    104: "C_HDLC", 105: "IEEE802_11", 106: "ATM_CLIP", 107: "FRELAY", 108: "LOOP", 113: "LINUX_SLL",
    114: "LTALK", 117: "PFLOG", 119: "IEEE802_11_PRISM", 122: "IP_OVER_FC", 123: "SUNATM",
    127: "IEEE802_11_RADIOTAP", 129: "ARCNET_LINUX", 138: "APPLE_IP_OVER_IEEE1394", 139: "MTP2_WITH_PHDR",
    140: "MTP2", 141: "MTP3", 142: "SCCP", 143: "DOCSIS", 144: "LINUX_IRDA", 147: "USER0", 161: "USER14",
    162: "USER15", 163: "IEEE802_11_AVIO", 165: "BACNET_MS_TP", 166: "PPP_PPPD", 169: "GPRS_LLC",
    177: "LINUX_LAPD", 187: "BLUETOOTH_HCI_H4", 189: "USB_LINUX", 192: "PPI", 195: "IEEE802_15_4_WITHFCS",
    197: "ERF", 201: "BLUETOOTH_HCI_H4_WITH_PHDR", 202: "AX25_KISS", 204: "PPP_WITH_DIR",
    205: "C_HDLC_WITH_DIR", 209: "IPMB_LINUX", 215: "IEEE802_15_4_NONASK_PHY", 220: "USB_LINUX_MMAPPED",
    224: "FC_2", 225: "FC_2_WITH_FRAME_DELIMS", 226: "IPNET", 227: "CAN_SOCKETCAN", 228: "IPV4", 229: "IPV6",
    230: "IEEE802_15_4_NOFCS", 231: "DBUS", 235: "DVB_CI", 236: "MUX27010", 237: "STANAG_5066_D_PDU",
    239: "NFLOG", 240: "NETANALYZER", 241: "NETANALYZER_TRANSPARENT", 242: "IPOIB", 243: "MPEG_2_TS",
    244: "NG40", 245: "NFC_LLCP", 247: "INFINIBAND", 248: "SCTP", 249: "USBPCAP", 250: "RTAC_SERIAL",
    251: "BLUETOOTH_LE_LL", 253: "NETLINK", 254: "BLUETOOTH_LINUX_MONITOR", 255: "BLUETOOTH_BREDR_BB",
    256: "BLUETOOTH_LE_LL_WITH_PHDR", 257: "PROFIBUS_DL", 258: "PKTAP", 259: "EPON", 260: "IPMI_HPM_2",
    261: "ZWAVE_R1_R2", 262: "ZWAVE_R3", 263: "WATTSTOPPER_DLM", 264: "ISO_14443", 265: "RDS",
    266: "USB_DARWIN", 268: "SDLC", 270: "LORATAP", 271: "VSOCK", 272: "NORDIC_BLE", 273: "DOCSIS31_XRA31",
    274: "ETHERNET_MPACKET", 275: "DISPLAYPORT_AUX", 276: "LINUX_SLL2", 278: "OPENVIZSLA", 279: "EBHSCR",
    280: "VPP_DISPATCH", 281: "DSA_TAG_BRCM", 282: "DSA_TAG_BRCM_PREPEND", 283: "IEEE802_15_4_TAP",
    284: "DSA_TAG_DSA", 285: "DSA_TAG_EDSA", 286: "ELEE", 287: "Z_WAVE_SERIAL", 288: "USB_2_0",
    289: "ATSC_ALP", 290: "ETW", 292: "ZBOSS_NCP", 293: "USB_2_0_LOW_SPEED", 294: "USB_2_0_FULL_SPEED",
    295: "USB_2_0_HIGH_SPEED", 296: "AUERSWALD_LOG", 297: "ZWAVE_TAP", 298: "SILABS_DEBUG_CHANNEL",
    299: "FIRA_UCI", 300: "MDB", 301: "DECT_NR",
}

# Link types the kernel hands to the scalar path (reader._parse_one -> link_other); the kernel's own
# list of them (_decode.py, "other link types") must be the same set: tests check it.
FDDI, PPP, PPP_HDLC, PPP_ETHER, C_HDLC, IEEE802_11, RADIOTAP, PPI, NFLOG = 10, 9, 50, 51, 104, 105, 127, 192, 239
SLOW_LINKTYPES = frozenset((FDDI, PPP, PPP_HDLC, PPP_ETHER, C_HDLC, IEEE802_11, RADIOTAP, PPI, NFLOG))

# PPP protocol numbers (RFC 1661 / IANA PPP DLL protocol numbers) -> ethertype
_PPP_PROTO = {0x0021: 0x0800, 0x0057: 0x86DD, 0x0281: 0x8847, 0x0283: 0x8848}
_NFULA_PAYLOAD = 9
_AF_INET, _AF_INET6 = 2, 10


def name(lt: int) -> str:
    """'NAME' of a link type, or 'unknown' (the registry has no entry we know)."""
    return NAMES.get(lt, "unknown")


def unsupported_warning(lt: int, iface: int | None = None) -> str:
    """The one warning line of an unsupported link type (pcap: for the file; pcapng: per interface)."""
    what = f"unsupported link type {lt} ({name(lt)})"
    if iface is None:
        return f"{what}; all records skipped"
    return f"interface {iface}: {what}; its records are skipped"


def llc_snap(data, off: int):
    """802.2 LLC at `off` (IEEE 802.2; SNAP: RFC 1042): DSAP=SSAP=0xAA, control 3 (UI), a 3-byte OUI
    and an ethertype -> (offset after SNAP, ethertype). Any other LLC (STP, NetBIOS, ...) is "non_ip"."""
    n = len(data)
    if n < off + 3 or data[off] != 0xAA or data[off + 1] != 0xAA or data[off + 2] != 3:
        return "non_ip"
    if n < off + 8:
        return "truncated_link_header"
    return off + 8, (data[off + 6] << 8) | data[off + 7]


def _ppp(data, off: int):
    """PPP (RFC 1661) at `off`, with or without the HDLC-like address/control bytes 0xFF 0x03 (RFC
    1662) and with a protocol field of one byte (compressed: odd) or two -> (l3, ethertype)."""
    n = len(data)
    if n >= off + 2 and data[off] == 0xFF and data[off + 1] == 0x03:
        off += 2
    if n < off + 1:
        return "truncated_link_header"
    if data[off] & 1:                      # protocol-field compression: one byte
        proto, off = data[off], off + 1
    else:
        if n < off + 2:
            return "truncated_link_header"
        proto, off = (data[off] << 8) | data[off + 1], off + 2
    et = _PPP_PROTO.get(proto)
    return "non_ip" if et is None else (off, et)


def _cisco_hdlc(data, off: int):
    """Cisco HDLC: address 0x0F (unicast) / 0x8F (broadcast), control 0, then an ethertype; 0x8035 is
    Cisco's SLARP here (address resolution for serial lines), not RARP: "non_ip" (as Wireshark says)."""
    if len(data) < off + 4:
        return "truncated_link_header"
    et = (data[off + 2] << 8) | data[off + 3]
    return "non_ip" if et == 0x8035 else (off + 4, et)


def _ieee80211(data, off: int):
    """An IEEE 802.11 frame (IEEE Std 802.11-2020, 9.2) at `off` -> LLC/SNAP of a data frame.
    Frame control: type 2 = data; subtypes with bit 2 set carry no body (null data: "non_ip"); bit 3
    = QoS (2 more header bytes, and with the Order flag a 4-byte HT control); ToDS+FromDS = a fourth
    address. Protected frames (flag 0x40) are "encrypted". Management/control frames are "non_ip"."""
    n = len(data)
    if n < off + 24:
        return "truncated_link_header"
    fc0, fc1 = data[off], data[off + 1]
    if (fc0 >> 2) & 3 != 2 or fc0 & 3:     # not a data frame (or a protocol version other than 0)
        return "non_ip"
    sub = fc0 >> 4
    if sub & 4:
        return "non_ip"
    hl = 24
    if fc1 & 3 == 3:
        hl += 6
    if sub & 8:
        hl += 2
        if fc1 & 0x80:
            hl += 4
    if n < off + hl:
        return "truncated_link_header"
    if fc1 & 0x40:
        return "encrypted"
    return llc_snap(data, off + hl)


def _radiotap(data, off: int):
    """Radiotap header (radiotap.org): version 0, pad, little-endian length; 802.11 follows."""
    n = len(data)
    if n < off + 4:
        return "truncated_link_header"
    if data[off] != 0:
        return "non_ip"
    hl = data[off + 2] | (data[off + 3] << 8)
    if hl < 8 or n < off + hl:
        return "truncated_link_header"
    return _ieee80211(data, off + hl)


def _ppi(data, off: int):
    """Per-Packet Information header (CACE PPI spec 1.0.10): version 0, flags, little-endian length and
    the link type of what follows (802.11 or Ethernet in practice; any link type of this module)."""
    n = len(data)
    if n < off + 8:
        return "truncated_link_header"
    if data[off] != 0:
        return "non_ip"
    hl, dlt = struct.unpack_from("<HI", data, off + 2)
    if hl < 8 or n < off + hl:
        return "truncated_link_header"
    if dlt == 1:                           # Ethernet, with its VLAN tags
        o = off + hl + 14
        if n < o:
            return "truncated_link_header"
        et = (data[o - 2] << 8) | data[o - 1]
        while et == 0x8100 or et == 0x88A8 or et == 0x9100:
            if n < o + 4:
                return "truncated_link_header"
            et = (data[o + 2] << 8) | data[o + 3]
            o += 4
        return o, et
    if dlt == PPI:
        return "non_ip"
    return link_other(data, dlt, off + hl)


def _nflog(data, off: int):
    """Linux NFLOG (tcpdump.org LINKTYPE_NFLOG): family, version 0, resource id (big-endian), then
    TLVs whose 16-bit length (header included, padded to 4 bytes) and type are in the capturing
    host's byte order (little-endian on the hosts that write them; a big-endian length is taken when
    the little-endian one cannot be). The packet is the value of the NFULA_PAYLOAD (9) TLV."""
    n = len(data)
    if n < off + 4:
        return "truncated_link_header"
    fam = data[off]
    if fam == _AF_INET:
        et = 0x0800
    elif fam == _AF_INET6:
        et = 0x86DD
    else:
        return "non_ip"
    o = off + 4
    while o + 4 <= n:
        ln = data[o] | (data[o + 1] << 8)
        typ = data[o + 2] | (data[o + 3] << 8)
        if ln < 4 or o + ln > n:
            bl = (data[o] << 8) | data[o + 1]
            if bl < 4 or o + bl > n:
                break
            ln, typ = bl, (data[o + 2] << 8) | data[o + 3]
        if typ & 0x7FFF == _NFULA_PAYLOAD:
            return o + 4, et
        o += (ln + 3) & ~3
    return "truncated_link_header"


def link_other(data, lt: int, off: int = 0):
    """Decode the link-layer framing `lt` (one of SLOW_LINKTYPES, or a link type a PPI header names)
    at data[off:] -> (l3 offset, ethertype) or a skip reason."""
    if lt == FDDI:                         # frame control, DA, SA (ISO 9314-2), then LLC
        if len(data) < off + 13:
            return "truncated_link_header"
        return llc_snap(data, off + 13)
    if lt == IEEE802_11:
        return _ieee80211(data, off)
    if lt == RADIOTAP:
        return _radiotap(data, off)
    if lt == PPI:
        return _ppi(data, off)
    if lt == NFLOG:
        return _nflog(data, off)
    if lt == PPP:
        return _ppp(data, off)
    if lt == PPP_HDLC:                     # PPP in HDLC-like framing, or Cisco HDLC (libpcap's rule)
        if len(data) > off and data[off] in (0x0F, 0x8F):
            return _cisco_hdlc(data, off)
        return _ppp(data, off)
    if lt == PPP_ETHER:                    # a PPPoE header (RFC 2516) without its Ethernet header
        if len(data) < off + 6:
            return "truncated_link_header"
        if data[off] != 0x11 or data[off + 1] != 0:
            return "non_ip"
        return _ppp(data, off + 6)
    if lt == C_HDLC:
        return _cisco_hdlc(data, off)
    return "unsupported_linktype"
