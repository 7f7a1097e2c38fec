#!/usr/bin/python3
"""Writes the fuzz_auth seed corpus (the input format is described at the
top of fuzz_auth.c): honest handshakes on both sides and both contexts,
with and without a secret; wrong-key, reflected, replayed and spoofed
steps; tampering in transit; well-formed and broken encoded steps.
Usage: gen_corpus_auth.py DIR (checked in: tests/fuzz/corpus/fuzz_auth)."""
import os
import struct
import sys

d = sys.argv[1]
os.makedirs(d, exist_ok=True)


def step(stepno, ctx, frm, to, nonce=bytes(32), mac=bytes(32)):
    return (b"TWA" + bytes([1, stepno, ctx, 0, 0]) + struct.pack("<II", frm, to)
            + nonce + mac)


seeds = {}
for secret, sbit in (("secret", 4), ("nosecret", 0)):
    for ctxname, cbit, ctx in (("data", 0, 1), ("rdv", 8, 2)):
        tag = "%s-%s" % (secret, ctxname)
        # mode 0: server; honest HELLO then honest PROOF
        seeds["server-ok-" + tag] = bytes([0 | sbit | cbit, 1, 1])
        seeds["server-wrongkey-" + tag] = bytes([0 | sbit | cbit, 1, 2])
        seeds["server-reflect-" + tag] = bytes([0 | sbit | cbit, 1, 3])
        seeds["server-replay-" + tag] = bytes([0 | sbit | cbit, 1, 0x21, 1])
        seeds["server-spoof-" + tag] = bytes([0 | sbit | cbit, 0x41, 7, 1])
        seeds["server-twice-" + tag] = bytes([0 | sbit | cbit, 1, 1, 1])
        seeds["server-raw-" + tag] = bytes([0 | sbit | cbit, 0]) + step(
            1, ctx, 1, 0xFFFFFFFF if ctx == 2 else 0, bytes(range(32)))
        # mode 1: client; honest CHALLENGE, wrong key, its own HELLO back
        seeds["client-ok-" + tag] = bytes([1 | sbit | cbit, 1])
        seeds["client-wrongkey-" + tag] = bytes([1 | sbit | cbit, 2, 1])
        seeds["client-reflect-" + tag] = bytes([1 | sbit | cbit, 3])
        seeds["client-flip-" + tag] = (bytes([1 | sbit | cbit, 0x11]) +
                                       bytes(79) + b"\x01")
        # mode 2: both honest; then a client with another key; tampering
        seeds["both-ok-" + tag] = bytes([2 | sbit | cbit, 0, 0, 0])
        seeds["both-otherkey-" + tag] = bytes([2 | sbit | cbit | 0x10, 0, 0, 0])
        seeds["both-tamper-" + tag] = (bytes([2 | sbit | cbit, 0, 1]) +
                                       bytes(20) + b"\x80" + bytes(59) + b"\0")
# mode 3: the decoder
seeds["decode-hello"] = bytes([3]) + step(1, 1, 1, 0, bytes(range(32)))
seeds["decode-proof"] = bytes([3]) + step(3, 2, 5, 0xFFFFFFFF, bytes(32),
                                          bytes(range(32)))
seeds["decode-short"] = bytes([3]) + step(1, 1, 1, 0)[:79]
seeds["decode-badstep"] = bytes([3]) + step(4, 1, 1, 0)
seeds["decode-reserved"] = bytes([3]) + step(1, 1, 1, 0)[:6] + b"\1\0" + \
    step(1, 1, 1, 0)[8:]
for name, b in sorted(seeds.items()):
    with open(os.path.join(d, name), "wb") as f:
        f.write(b)
print("%d seeds in %s" % (len(seeds), d))
