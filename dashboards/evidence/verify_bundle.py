#!/usr/bin/env python3
"""Verify a tidegate evidence bundle without any tidegate code.

Usage: verify_bundle.py BUNDLE.json [--public-key KEY.pem]

Needs only Python 3's standard library and the `openssl` command (3.0 or later) for the
Ed25519 signature. Checks, and says which check failed:

1. the checkpoint is a C2SP signed note whose signature line by the log's key (key id =
   SHA-256(name || "\\n" || 0x01 || public key)[:4]) verifies over the note's text with
   the public key (the bundle's own, or --public-key: the key you were given out of band,
   which the bundle's key must equal);
2. every entry's leaf hash is SHA-256(0x00 || line), and its inclusion proof leads from
   that leaf to the checkpoint's root (RFC 9162 section 2.1.3.2);
3. every entry line is a JSON object whose "index" is the entry's position.

Exit status 0 when everything verifies, 1 otherwise.
"""

import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile


def fail(msg):
    print(f"FAILED: {msg}")
    sys.exit(1)


def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(index, size, leaf, proof, root):
    """RFC 9162 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def raw_public_key(pem):
    """The 32 key bytes of an Ed25519 SubjectPublicKeyInfo PEM."""
    b64 = "".join(l for l in pem.strip().splitlines() if not l.startswith("-----"))
    der = base64.b64decode(b64)
    prefix = bytes.fromhex("302a300506032b6570032100")
    if len(der) != 44 or not der.startswith(prefix):
        fail("the public key is not an Ed25519 SubjectPublicKeyInfo")
    return der[12:]


def openssl_verify(pem, message, signature):
    with tempfile.TemporaryDirectory() as d:
        paths = {n: os.path.join(d, n) for n in ("key.pem", "msg", "sig")}
        with open(paths["key.pem"], "w") as f:
            f.write(pem)
        with open(paths["msg"], "wb") as f:
            f.write(message)
        with open(paths["sig"], "wb") as f:
            f.write(signature)
        r = subprocess.run(
            ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", paths["key.pem"],
             "-rawin", "-in", paths["msg"], "-sigfile", paths["sig"]],
            capture_output=True, text=True)
        return r.returncode == 0


def main(argv):
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--public-key"):
        print(__doc__)
        return 2
    with open(argv[1]) as f:
        bundle = json.load(f)
    if bundle.get("format") != "tidegate-evidence-bundle/1":
        fail(f"unknown bundle format {bundle.get('format')!r}")
    pem = bundle["public_key_pem"]
    key = raw_public_key(pem)
    if len(argv) == 4:
        with open(argv[3]) as f:
            trusted = f.read()
        if raw_public_key(trusted) != key:
            fail("the bundle is signed by another key than the one given")
        pem = trusted

    # 1. The checkpoint's signature.
    note = bundle["checkpoint"]["note"]
    if "\n\n" not in note:
        fail("checkpoint: no blank line between text and signatures")
    text, sigs = note.split("\n\n", 1)
    text += "\n"
    lines = text.split("\n")
    origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2])
    if origin != bundle["origin"] or size != bundle["checkpoint"]["size"] or len(root) != 32:
        fail("checkpoint: origin, size or root do not match the bundle")
    key_id = hashlib.sha256(origin.encode() + b"\n" + b"\x01" + key).digest()[:4]
    signed = False
    for line in sigs.splitlines():
        if not line.startswith("\u2014 "):
            fail(f"checkpoint: not a signature line: {line!r}")
        name, b64 = line[2:].split(" ", 1)
        blob = base64.b64decode(b64)
        if name != origin or len(blob) != 68 or blob[:4] != key_id:
            continue
        if not openssl_verify(pem, text.encode(), blob[4:]):
            fail("checkpoint: the signature does not verify with the log's public key")
        signed = True
    if not signed:
        fail(f"checkpoint: no signature by the log's key ({origin})")

    # 2 and 3. Every entry, included in that checkpoint.
    entries = bundle["entries"]
    if not entries:
        fail("no entries")
    for e in entries:
        line = e["line"].encode()
        leaf = hashlib.sha256(b"\x00" + line).digest()
        if leaf.hex() != e["leaf_hash"]:
            fail(f"entry {e['index']}: its leaf hash does not match its line")
        proof = [bytes.fromhex(h) for h in e["inclusion_proof"]]
        if not verify_inclusion(e["index"], size, leaf, proof, root):
            fail(f"entry {e['index']}: not included in the checkpoint of {size} entries")
        body = json.loads(e["line"])
        if body.get("index") != e["index"]:
            fail(f"entry {e['index']}: its line says index {body.get('index')}")
    ids = sorted({str(json.loads(e["line"]).get("data", {}).get("id")) for e in entries})
    print(f"OK: {len(entries)} entries ({', '.join(ids)}) included in the checkpoint of "
          f"{size} entries of {origin}, signed by key {key_id.hex()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
