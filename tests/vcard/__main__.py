"""``python -m tests.vcard --state FILE``: insert the virtual OpenPGP card into vpcd's reader.

A missing state file is created as a factory-fresh card (PIN 123456, admin PIN 12345678,
RSA-2048 key attributes unless --algorithm ed25519). The card stays inserted until vpcd
closes the connection or the process is terminated; every change is in the file by then.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

from tests.vcard.card import OpenPgpCard, create_card
from tests.vcard.vpcd import VPCD_PORT, connect, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.vcard")
    parser.add_argument("--state", type=Path, required=True, help="the card's state file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=VPCD_PORT)
    parser.add_argument("--connect-timeout", type=float, default=10.0)
    parser.add_argument("--algorithm", choices=("rsa2048", "ed25519"), default="rsa2048",
                        help="factory key attributes of a new card")
    parser.add_argument("--pin", default="123456", help="PW1 of a new card")
    parser.add_argument("--admin-pin", default="12345678", help="PW3 of a new card")
    parser.add_argument("--no-chaining", action="store_true",
                        help="a new card refuses command chaining (6884)")
    parser.add_argument("--no-extended", action="store_true",
                        help="a new card announces no extended length APDUs")
    parser.add_argument("--pull-at", type=lambda text: int(text, 16), metavar="INS",
                        help="leave the reader in the middle of the first command with this "
                        "instruction byte (hex, e.g. 2A for PSO): a card pulled mid-command")
    args = parser.parse_args(argv)

    if not args.state.exists():
        create_card(args.state, pin=args.pin.encode(), admin_pin=args.admin_pin.encode(),
                    algorithm=args.algorithm, chaining=not args.no_chaining,
                    extended=not args.no_extended)
    card = OpenPgpCard(args.state)

    def stop(signum: int, frame: FrameType | None) -> None:
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    sock = connect(args.host, args.port, args.connect_timeout)
    try:
        serve(card, sock, args.pull_at)
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
