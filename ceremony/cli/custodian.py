"""`ceremony custodian enroll`: a custodian's OpenPGP card becomes their identity.

Reads (or with --generate, makes) the Ed25519 signature key on the card, proves the card
signs with it after the custodian's PIN, and prints the public identity to paste into the
ceremony script: the ``public_key`` line, the key's fingerprint as hex and as words people
read aloud, and the OpenPGP fingerprint GnuPG shows for the same key.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime

from ceremony.errors import CardError, UsageError

# Signed once at enrolment to prove card, key and PIN work together. Not JSON, so it can
# never be mistaken for a ceremony statement (those are canonical JSON objects).
ENROLL_CHECK = b"ceremony.enroll-check.v1\n"


def enroll(args: argparse.Namespace) -> int:
    from ceremony.adapters.openpgp_card import OpenPgpCard
    from ceremony.cli.login import read_pin
    from ceremony.display import grouped_hex, words

    if args.admin_pin_file is not None and not args.generate:
        raise UsageError("--admin-pin-file is only needed with --generate",
                         hint="reading the card's key needs no admin PIN")
    with OpenPgpCard(args.reader) as card:
        if args.generate:
            admin_pin = read_pin(args.admin_pin_file, "card admin PIN (PW3)")
            identity = card.generate(admin_pin)
        else:
            identity = card.identity()
        card.verify(read_pin(args.pin_file, "card PIN"))
        challenge = ENROLL_CHECK + os.urandom(32)
        signature = card.sign(challenge)
        info = card.info()
    from ceremony.model.statements import verify_ed25519

    if not verify_ed25519(identity.public_key, signature, challenge):
        raise CardError("the card's test signature does not verify with its own key",
                        hint="the card may be faulty; do not enroll it")

    created = datetime.fromtimestamp(info.generated, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") \
        if info.generated else "not recorded"
    signatures = "signature" if info.signature_counter == 1 else "signatures"
    lines = [
        f"card:      OpenPGP card {info.version}, {info.manufacturer_name}, serial "
        f"{info.serial}, in reader {info.reader!r}",
        f"key:       Ed25519 signature key {'generated now' if args.generate else 'on the card'}"
        f" (created {created})",
        f"PIN check: the card signed a test message after the PIN ({info.pin_tries} PIN tries "
        f"left, {info.signature_counter} {signatures} made by this key)",
        "",
        "Paste into the ceremony script, in this custodian's [[participants]] entry:",
        f'public_key = "{identity.encoded}"',
        "",
        "fingerprint (SHA-256 of the public key; read it aloud when the script is reviewed):",
        f"  {grouped_hex(identity.fingerprint)}",
        f"  words: {words(identity.fingerprint)}",
    ]
    if identity.openpgp_fingerprint:
        lines += ["OpenPGP fingerprint (what `gpg --card-status` shows for the signature key):",
                  f"  {grouped_hex(identity.openpgp_fingerprint)}"]
    print("\n".join(lines))
    _print_qr(f'public_key = "{identity.encoded}"\n')
    return 0


def _print_qr(line: str) -> None:
    """The public_key line as a terminal QR part (docs/qr-format.md), for a phone or for
    `ceremony qr decode` on the machine where the script is written."""
    from ceremony.adapters.qrcodes import render_terminal
    from ceremony.qrframe import Payload

    payload = Payload("text", line.encode("ascii"))
    frames = payload.frames()
    tty = sys.stdout.isatty()
    for i, frame in enumerate(frames, 1):
        drawing = render_terminal(frame)
        if tty:  # black on white: a scanner needs the light quiet zone around the blocks
            drawing = "\n".join(f"\x1b[30;47m{row}\x1b[0m" for row in drawing.split("\n"))
        print(f"\nQR of the public_key line (part {i} of {len(frames)}, sha256 "
              f"{payload.digest[:16]}...):\n{drawing}")
