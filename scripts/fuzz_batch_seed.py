#!/usr/bin/env python3
"""Reads flow records (JSON lines from `tidegate-probe replay --json`) on stdin and
writes one wire batch holding them to argv[1]: a seed for the batch_decode fuzz target.
Written in batch format 2 (the oldest layout with epochs, which the decoder still reads:
its columns are a prefix of today's), zstd-compressed, as wire/src/batch.rs lays it out."""
import ipaddress, json, struct, sys, subprocess

recs = [json.loads(l) for l in sys.stdin if l.strip()]
lines = sorted({r.get("line", "") for r in recs})
def s(x):
    b = x.encode()
    return struct.pack(">I", len(b)) + b
body = struct.pack(">I", len(lines)) + b"".join(s(l) for l in lines)
n = len(recs)
body += struct.pack(">I", n)
flags, src, dst = b"", b"", b""
for r in recs:
    a, b = ipaddress.ip_address(r["src"]), ipaddress.ip_address(r["dst"])
    f = (1 if a.version == 4 else 0) | (2 if b.version == 4 else 0)
    flags += bytes([f])
    v4 = lambda ip: b"\0" * 10 + b"\xff\xff" + ip.packed
    src += v4(a) if a.version == 4 else a.packed
    dst += v4(b) if b.version == 4 else b.packed
body += flags + src + dst
body += bytes(r["proto"] for r in recs)
for k in ("sport", "dport"):
    body += b"".join(struct.pack(">H", r.get(k, 0)) for r in recs)
body += b"".join(struct.pack(">H", 0) for r in recs)  # vlan
body += b"".join(struct.pack(">H", r.get("tcp_flags", 0)) for r in recs)
body += bytes(0 for r in recs) + bytes(0 for r in recs)  # icmp type, code
for k in ("packets", "bytes"):
    body += b"".join(struct.pack(">Q", r.get(k, 0)) for r in recs)
body += b"".join(struct.pack(">Q", 0) for r in recs)  # first
body += b"".join(struct.pack(">Q", 0) for r in recs)  # duration
body += b"".join(struct.pack(">I", 0) for r in recs)  # ifindex
body += b"".join(struct.pack(">I", lines.index(r.get("line", ""))) for r in recs)
body += b"\0"  # no health snapshot
z = subprocess.run(["zstd", "-q", "-c"], input=body, capture_output=True).stdout
head = b"TGB" + bytes([2]) + struct.pack(">QQQ", 1, 7, 0) + s("seed") + bytes([1]) + struct.pack(">I", len(body))
open(sys.argv[1], "wb").write(head + z)
