"""GmSSL's stderr trace: malformed input is refused before GmSSL sees it.

GmSSL is compiled with ``#define DEBUG 1`` (gmssl/error.h) and gmssl-pyx has
no switch, so every input GmSSL rejects prints ``file.c:line:function():``
lines on the process's stderr — noise any caller could make. The plugin
checks signatures and ciphertexts structurally first (strict DER, ranges, the
point on the curve). Each case runs in a child process whose stderr (file
descriptor 2, where GmSSL's C code writes) the test reads.

What is left, and pinned here so the documentation stays true: a well-formed
signature that does not verify, and a well-formed ciphertext whose hash does
not match, fail inside GmSSL's arithmetic and still print two lines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import gmssl_pyx
import pytest
from kmsframe_algo_sm2 import (MAX_PLAINTEXT, Sm2, encoding, plausible_ciphertext,
                               plausible_signature)

N = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)

CHILD = """
import json, sys
from kmsframe_algo_sm2 import Sm2
from kmsframe.errors import DecryptionFailed
from kmsframe.secrets import KeyMaterial
handle = Sm2().load(KeyMaterial(bytes.fromhex(sys.argv[1])))
out = []
for kind, hex_input in json.loads(sys.stdin.read()):
    data = bytes.fromhex(hex_input)
    if kind == "verify":
        out.append(handle.verify(b"message", data, {}))
    else:
        try:
            handle.decrypt(data, b"")
            out.append("opened")
        except DecryptionFailed:
            out.append("failed")
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def material():
    return Sm2().generate(os.urandom)


def run_child(material, cases: list[tuple[str, bytes]]) -> tuple[list, str]:
    done = subprocess.run([sys.executable, "-c", CHILD, material.reveal().hex()],
                          input=json.dumps([(k, d.hex()) for k, d in cases]),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


def der_int(value: int, pad: bool = False) -> bytes:
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")
    if pad:
        body = b"\x00" + body
    return bytes([0x02, len(body)]) + body


def der_seq(*parts: bytes) -> bytes:
    body = b"".join(parts)
    return bytes([0x30, len(body)]) + body


def test_malformed_signatures_are_refused_without_a_trace(material) -> None:
    good = Sm2().load(material).sign(b"message", {})
    cases = [
        os.urandom(70),
        os.urandom(64),  # raw r || s, as some SM2 libraries write it
        good[:-1],  # truncated
        good + b"\x00",  # trailing byte
        der_seq(der_int(0), der_int(5)),  # r = 0
        der_seq(der_int(N), der_int(5)),  # r = n
        der_seq(der_int(5), der_int(N + 1)),  # s > n
        der_seq(der_int(5), der_int(N - 5)),  # r + s = n
        der_seq(der_int(5, pad=True), der_int(7)),  # non-minimal INTEGER
        der_seq(der_int(5), der_int(7), der_int(9)),  # three INTEGERs
        b"",
    ]
    results, stderr = run_child(material, [("verify", c) for c in cases])
    assert results == [False] * len(cases)
    assert stderr == ""


def test_malformed_ciphertexts_are_refused_without_a_trace(material) -> None:
    handle = Sm2().load(material)
    good = handle.encrypt(b"secret data key", b"")
    x1, y1, _, _ = encoding.parse_ciphertext(good)
    c3, c2 = b"\x11" * 32, b"\x22" * 16

    def body(x: int, y: int, c3: bytes, c2: bytes) -> bytes:
        return der_seq(der_int(x), der_int(y), b"\x04" + bytes([len(c3)]) + c3,
                       b"\x04" + bytes([len(c2)]) + c2)

    cases = [
        os.urandom(120),
        good[:-3],
        good + b"\x00",
        body(x1, y1 + 1, c3, c2),  # C1 not on the curve
        body(5, 7, c3[:31], c2),  # short C3
        body(5, 7, c3, b""),  # empty C2
        b"",
    ]
    results, stderr = run_child(material, [("decrypt", c) for c in cases])
    assert results == ["failed"] * len(cases)
    assert stderr == ""
    # The curve check accepts the real C1 (only the hash and body were changed).
    assert plausible_ciphertext(body(x1, y1, c3, c2))


def test_what_gmssl_made_passes_the_checks(material) -> None:
    """The checks are no stricter than GmSSL: its own output always passes."""
    handle = Sm2().load(material)
    for i in range(200):
        assert plausible_signature(handle.sign(os.urandom(i % 40), {}))
    for size in (1, 2, 31, 32, 33, 100, MAX_PLAINTEXT):
        for _ in range(10):
            assert plausible_ciphertext(handle.encrypt(os.urandom(size), b""))
    public, private = gmssl_pyx.sm2_key_generate()
    for _ in range(50):
        assert plausible_signature(gmssl_pyx.sm2_sign(private, public, b"m", b"1234567812345678"))


def test_well_formed_forgeries_still_reach_gmssl_and_print(material) -> None:
    """The documented limit: GmSSL has to do the arithmetic, and then it prints."""
    handle = Sm2().load(material)
    other_message = handle.sign(b"another message", {})
    good = handle.encrypt(b"secret data key", b"")
    tampered = good[:-1] + bytes([good[-1] ^ 1])
    results, stderr = run_child(material, [("verify", other_message),
                                           ("decrypt", tampered),
                                           ("verify", handle.sign(b"message", {})),
                                           ("decrypt", good)])
    assert results == [False, "failed", True, "opened"]
    assert "sm2_do_verify" in stderr and "sm2_do_decrypt" in stderr
    assert len(stderr.splitlines()) == 4  # two lines each, nothing from the good calls
