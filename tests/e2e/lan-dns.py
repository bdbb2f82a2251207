#!/usr/bin/env python3
"""The LAN's resolver in the end-to-end tests' private network
(tests/e2e/harness/net.rs, `Net`): a minimal DNS server over UDP that knows a
few names.

    python3 lan-dns.py LISTEN_ADDRESS NAME=IPV4...

It answers A queries for the given names, NOERROR without answers for their
other record types (AAAA, ...), and NXDOMAIN for every other name. One
question per query, no recursion, no TCP: enough for podman's aardvark-dns
and Docker's embedded DNS server to forward a name they do not know.
"""

import socket
import struct
import sys


def question(packet):
    """(name, qtype, end offset) of the first question."""
    labels, i = [], 12
    while packet[i]:
        n = packet[i]
        labels.append(packet[i + 1 : i + 1 + n].decode("ascii", "replace").lower())
        i += 1 + n
    qtype = struct.unpack("!H", packet[i + 1 : i + 3])[0]
    return ".".join(labels), qtype, i + 5


def answer(packet, names):
    ident, flags = struct.unpack("!HH", packet[:4])
    name, qtype, end = question(packet)
    rd = flags & 0x0100
    known = name in names
    records = b""
    if known and qtype == 1:
        addr = socket.inet_aton(names[name])
        # A pointer to the question's name, type A, class IN, TTL 60.
        records = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + addr
    rcode = 0 if known else 3
    header = struct.pack(
        "!HHHHHH", ident, 0x8000 | 0x0400 | rd | 0x0080 | rcode, 1, 1 if records else 0, 0, 0
    )
    return header + packet[12:end] + records


def main():
    listen = sys.argv[1]
    names = dict(arg.lower().split("=", 1) for arg in sys.argv[2:])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((listen, 53))
    print(f"lan-dns on {listen}:53 knows {names}", flush=True)
    while True:
        packet, peer = sock.recvfrom(4096)
        try:
            reply = answer(packet, names)
        except (IndexError, struct.error, UnicodeError):
            continue
        name = question(packet)[0]
        print(f"{peer[0]} asks {name}", flush=True)
        sock.sendto(reply, peer)


if __name__ == "__main__":
    main()
