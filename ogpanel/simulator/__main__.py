"""Command line: `python -m ogpanel.simulator --public-key KEY_ID=public.pem[:0,3-7] ...`.

Prints the base URL on one line, then serves until SIGINT or SIGTERM.
"""

import argparse
import ipaddress
import re
import signal
import sys
import threading
from pathlib import Path

from ogpanel.simulator.ratelimit import DEFAULT_ACCOUNT, TIERS
from ogpanel.simulator.server import SimulatorServer

SUBACCOUNT_SPEC = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")

KeySpec = tuple[str, Path, frozenset[int] | None]


def parse_subaccounts(spec: str) -> frozenset[int]:
    """'0,3-7' -> {0, 3, 4, 5, 6, 7}."""
    subaccounts: set[int] = set()
    for part in spec.split(","):
        first, _, last = part.partition("-")
        low, high = int(first), int(last or first)
        if low > high:
            raise argparse.ArgumentTypeError(f"empty subaccount range {part!r}")
        subaccounts.update(range(low, high + 1))
    return frozenset(subaccounts)


def parse_key_spec(spec: str) -> KeySpec:
    """KEY_ID=path/to/public.pem, optionally followed by :SUBACCOUNTS."""
    key_id, equals, rest = spec.partition("=")
    if not equals or not key_id or not rest:
        raise argparse.ArgumentTypeError(f"expected KEY_ID=path[:subaccounts], got {spec!r}")
    path, colon, subaccounts = rest.rpartition(":")
    # Only a trailing list of numbers is a restriction, so paths with colons still work.
    if colon and path and SUBACCOUNT_SPEC.match(subaccounts):
        return key_id, Path(path), parse_subaccounts(subaccounts)
    return key_id, Path(rest), None


def parse_key_account(spec: str) -> tuple[str, str]:
    """KEY_ID=ACCOUNT."""
    key_id, equals, account = spec.partition("=")
    if not equals or not key_id or not account:
        raise argparse.ArgumentTypeError(f"expected KEY_ID=ACCOUNT, got {spec!r}")
    return key_id, account


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ogpanel.simulator",
        description="A local Kalshi exchange for order groups, served under /trade-api/v2.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=8765, help="port to bind; 0 picks a free one (default: 8765)")
    parser.add_argument(
        "--public-key",
        dest="public_keys",
        action="append",
        default=[],
        type=parse_key_spec,
        metavar="KEY_ID=PATH[:SUBACCOUNTS]",
        help="accept requests signed by this key; SUBACCOUNTS like 0,3-7 restricts it (repeatable)",
    )
    parser.add_argument(
        "--key-account",
        dest="key_accounts",
        action="append",
        default=[],
        type=parse_key_account,
        metavar="KEY_ID=ACCOUNT",
        help="the key draws on ACCOUNT's rate budget (default: every key on one account; repeatable)",
    )
    parser.add_argument(
        "--max-subaccount", type=int, default=63, help="highest subaccount number (default: 63, as the exchange)"
    )
    parser.add_argument(
        "--tier", choices=list(TIERS), default=None, help="enforce this tier's rate limits (default: no limits)"
    )
    parser.add_argument("--latency", type=float, default=0.0, metavar="SECONDS", help="delay every API answer")
    parser.add_argument(
        "--timestamp-window",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how far KALSHI-ACCESS-TIMESTAMP may be from now (default: 30)",
    )
    parser.add_argument(
        "--lenient-content-type",
        action="store_true",
        help="accept PUT and POST without Content-Type: application/json (the exchange refuses them)",
    )
    parser.add_argument(
        "--ws-heartbeat", type=float, default=10.0, metavar="SECONDS", help="WebSocket ping interval (default: 10)"
    )
    parser.add_argument("--quiet", action="store_true", help="do not log each request to stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        sim = SimulatorServer(
            args.host,
            args.port,
            max_subaccount=args.max_subaccount,
            tier=args.tier,
            timestamp_window=args.timestamp_window,
            latency=args.latency,
            quiet=args.quiet,
            require_json_content_type=not args.lenient_content_type,
            ws_heartbeat=args.ws_heartbeat or None,
        )
    except OSError as error:
        print(f"cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    accounts = dict(args.key_accounts)
    for key_id, path, subaccounts in args.public_keys:
        try:
            sim.add_key(key_id, path.read_bytes(), subaccounts, accounts.get(key_id, DEFAULT_ACCOUNT))
        except (OSError, ValueError) as error:
            sim.stop()
            parser.error(f"--public-key {key_id}: {error}")
    if not _is_loopback(args.host):
        print("warning: /_sim/ is unauthenticated and anyone who can reach this port may use it", file=sys.stderr)

    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    sim.serve_in_thread()
    print(sim.base_url, flush=True)
    stopping.wait()
    sim.stop()
    return 0


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


if __name__ == "__main__":
    sys.exit(main())
