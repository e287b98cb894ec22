"""Finding private-key material in text: pages, headers, logs, error reports, audit events.

A key can leak in many spellings: its PEM (PKCS#8 or PKCS#1), the PEM re-wrapped or unwrapped
(pprint in an error report, a bytes repr), its DER in hex, or its private numbers in decimal or
hex. Each spelling is cut into 16-character pieces; a leak shows most of its pieces whole however
it was wrapped, while 16 characters of base64, hex or digits never match other text by chance.
A short tail is left out for that reason.
"""

import base64
import re

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

PIECE = 16


def pieces(text: str) -> list[str]:
    return [text[i : i + PIECE] for i in range(0, len(text) - PIECE + 1, PIECE)]


def body_pieces(pem: bytes) -> list[str]:
    """The pieces of every base64 body line of a PEM."""
    lines = [line for line in pem.decode().splitlines() if not line.startswith("-----")]
    return [piece for line in lines for piece in pieces(line)]


def key_pieces(key: rsa.RSAPrivateKey) -> list[str]:
    """Pieces of every spelling of a private key: PEM bodies, DER hex, and the private numbers.

    A private key's encodings embed the public key (modulus and exponent), which is public and
    may rightly be shown: pieces that are found in the public key's own spellings are left out.
    """
    found = []
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        found += body_pieces(key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()))
        der = key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())
        found += pieces(der.hex()) + pieces(der.hex().upper())
    numbers = key.private_numbers()
    for secret in (numbers.d, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp):
        found += pieces(str(secret)) + pieces(f"{secret:x}") + pieces(f"{secret:X}")
    public = _public_spellings(key.public_key())
    return [piece for piece in found if piece not in public]


def _public_spellings(key: rsa.RSAPublicKey) -> str:
    n = key.public_numbers().n
    spellings = [str(n), f"{n:x}", f"{n:X}"]
    for fmt in (serialization.PublicFormat.SubjectPublicKeyInfo, serialization.PublicFormat.PKCS1):
        der = key.public_bytes(serialization.Encoding.DER, fmt)
        spellings += [base64.b64encode(der).decode(), der.hex(), der.hex().upper()]
    return "\n".join(spellings)


# A piece is base64, hex or digits, so only runs of those characters can hold one.
_RUN = re.compile(rf"[A-Za-z0-9+/]{{{PIECE},}}")


def leaks(secret_pieces: list[str], texts: dict[str, str]) -> list[tuple[str, str]]:
    """(where, piece) for every piece found in any of the named texts.

    Every window of every candidate run is looked up in a set: the crawl's texts run to
    megabytes, and a substring search per piece would take minutes.
    """
    wanted = set(secret_pieces)
    found = []
    for where, text in texts.items():
        for run in _RUN.findall(text):
            found += [(where, run[i : i + PIECE]) for i in range(len(run) - PIECE + 1) if run[i : i + PIECE] in wanted]
    return found


def assert_no_key_material(pems: list[bytes], *texts: str) -> None:
    for pem in pems:
        secret = body_pieces(pem)
        assert secret
        assert not leaks(secret, {str(n): text for n, text in enumerate(texts)})
