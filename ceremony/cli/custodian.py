"""`ceremony custodian enroll`: a custodian's OpenPGP card becomes their identity.

Reads (or with --generate, makes) the Ed25519 signature key on the card, proves the card
signs with it after the custodian's PIN, and prints the public identity to paste into the
ceremony script: the ``public_key`` line, the key's fingerprint as hex and as words people
read aloud, and the OpenPGP fingerprint GnuPG shows for the same key.

With ``--token URI --key-label LABEL`` the identity is an Ed25519 key on the custodian's
own PKCS#11 token instead (ceremony/adapters/token_identity.py): read, or with --generate
made on the token, then proved the same way with the token's user PIN.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime

from ceremony.errors import CardError, TokenError, UsageError

# Signed once at enrolment to prove card, key and PIN work together. Not JSON, so it can
# never be mistaken for a ceremony statement (those are canonical JSON objects).
ENROLL_CHECK = b"ceremony.enroll-check.v1\n"


def enroll(args: argparse.Namespace) -> int:
    from ceremony.adapters.openpgp_card import OpenPgpCard
    from ceremony.cli.login import read_pin
    from ceremony.display import grouped_hex, words

    if args.token is not None:
        return enroll_token(args)
    if args.key_label is not None or args.key_id is not None or args.module is not None:
        raise UsageError("--key-label, --key-id and --module go with --token",
                         hint="add --token pkcs11:token=LABEL to enrol a key on a token")
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


def enroll_token(args: argparse.Namespace) -> int:
    """`ceremony custodian enroll --token URI --key-label LABEL [--generate]`."""
    import re

    from ceremony.adapters.pkcs11_token import find_token, module_path, parse_uri, text_value
    from ceremony.adapters.token_identity import TokenKey, TokenSigner, generate_identity
    from ceremony.cli.login import read_pin
    from ceremony.display import grouped_hex, words
    from ceremony.engine.derive import wipe
    from ceremony.model.statements import encode_key, verify_ed25519

    if args.reader is not None or args.admin_pin_file is not None:
        raise UsageError("--reader and --admin-pin-file are for a card, not --token",
                         hint="a token is named by its URI and logged in with its user PIN")
    if not args.key_label:
        raise UsageError("--token needs --key-label, the label of the identity key on it",
                         hint="for example --key-label identity")
    if args.key_id is not None and not re.fullmatch(r"([0-9a-f]{2}){1,32}", args.key_id):
        raise UsageError(f"--key-id {args.key_id!r} is not a key id in lowercase hex")
    parse_uri(args.token)
    where = TokenKey(module_path(args.module, None), args.token, args.key_label, args.key_id)
    pin = read_pin(args.pin_file, "identity token user PIN")
    try:
        _, token = find_token(where.module, where.uri)  # no other session here: reset
        key_id = bytes.fromhex(args.key_id) if args.key_id else os.urandom(8)
        if args.generate:
            generate_identity(token, where, bytearray(pin), key_id)
            where = TokenKey(where.module, where.uri, where.label, key_id.hex())

        def again() -> bytearray:
            return bytearray(pin)

        signer = TokenSigner("the custodian", where, again)
        challenge = ENROLL_CHECK + os.urandom(32)
        signature = signer.sign(challenge)
    finally:
        wipe(pin)
    raw = signer.public_key_bytes
    if not verify_ed25519(raw, signature, challenge):  # (sign() checked it too)
        raise TokenError("the token's test signature does not verify with its own key",
                         hint="the token may be faulty; do not enroll it")
    from ceremony.canonical import sha256_hex

    fingerprint = sha256_hex(raw)
    lines = [
        f"token:     {token.label!r}, {token.manufacturer_id} {token.model}, serial "
        f"{text_value(token.serial)}, module {where.module}",
        f"key:       Ed25519 key {where.label!r}" + (f" id {where.key_id}" if where.key_id
                                                      else "")
        + (" generated now on the token" if args.generate else " on the token"),
        "PIN check: the token signed a test message after the PIN",
        "",
        "Paste into the ceremony script, in this custodian's [[participants]] entry:",
        f'public_key = "{encode_key(raw)}"',
        "",
        "and into the answers file of a run, under [tokens]:",
        f'<participant> = {{ uri = "{where.uri}", key_label = "{where.label}"'
        + (f', key_id = "{where.key_id}"' if where.key_id else "")
        + ', pin_file = "<participant>.pin" }',
        "",
        "fingerprint (SHA-256 of the public key; read it aloud when the script is reviewed):",
        f"  {grouped_hex(fingerprint)}",
        f"  words: {words(fingerprint)}",
    ]
    print("\n".join(lines))
    _print_qr(f'public_key = "{encode_key(raw)}"\n')
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
