#!/usr/bin/env python3
"""Write the signed release manifest ceremony/MANIFEST.json (docs/release.md).

    python scripts/make_manifest.py --new-key release-key.pem        # once: a release key
    python scripts/make_manifest.py --key release-key.pem            # each release
    python scripts/make_manifest.py --key K --package DIR --pin      # a test or local build

The manifest lists every file of the package (DIR, default ./ceremony) with its SHA-256,
the version from DIR/__init__.py, the build date (SOURCE_DATE_EPOCH when set, so a
reproducible build writes the same bytes) and the Python versions the release is for; it
is signed with the Ed25519 private key in --key. The key's public half must already be
pinned in DIR/data/release-key.pub, unless --pin writes it there first (only for a tree
you sign yourself: a test, or an unofficial image). The private key is never written into
the tree and never committed.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ceremony.manifest import (  # noqa: E402
    MANIFEST_NAME,
    RELEASE_KEY_NAME,
    build_manifest,
    dump_manifest,
    key_id,
    load_public_keys,
    sign_manifest,
    verify_tree,
)


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def new_key(path: Path) -> int:
    """Write a new Ed25519 private key (mode 0600, never overwriting) and show its public half."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    print(f"wrote the private release key {path} (keep it offline; never commit it)")
    print(f"key id: {key_id(key.public_key())}")
    print(f"pin its public half in ceremony/{RELEASE_KEY_NAME}:")
    print(public_pem(key).decode(), end="")
    return 0


def load_private(path: Path) -> Ed25519PrivateKey:
    password = os.environ.get("RELEASE_KEY_PASSPHRASE")
    key = serialization.load_pem_private_key(path.read_bytes(),
                                             password.encode() if password else None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SystemExit(f"make_manifest: {path} is not an Ed25519 private key")
    return key


def build_date() -> datetime:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return datetime.fromtimestamp(int(epoch), UTC)
    return datetime.now(UTC).replace(microsecond=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new-key", type=Path, help="write a new private release key here "
                        "and print its public half, then stop")
    parser.add_argument("--key", type=Path, help="the Ed25519 private release key (PEM, "
                        "PKCS#8; passphrase from $RELEASE_KEY_PASSPHRASE if encrypted)")
    parser.add_argument("--package", type=Path, default=REPO / "ceremony",
                        help="the package directory to list (default: ./ceremony)")
    parser.add_argument("--python", action="append", default=[],
                        help="a Python major.minor the release is for (repeatable; "
                        "default: this interpreter's)")
    parser.add_argument("--pin", action="store_true", help="write the key's public half "
                        f"into PACKAGE/{RELEASE_KEY_NAME} first (test or local builds only)")
    args = parser.parse_args(argv)
    if args.new_key:
        return new_key(args.new_key)
    if args.key is None:
        parser.error("--key is needed (or --new-key to make one)")
    package: Path = args.package.resolve()
    key = load_private(args.key)
    pinned = package / RELEASE_KEY_NAME
    if args.pin:
        pinned.parent.mkdir(parents=True, exist_ok=True)
        pinned.write_bytes(public_pem(key))
    if not pinned.is_file() or key_id(key.public_key()) not in {
            key_id(k) for k in load_public_keys(pinned)}:
        print(f"make_manifest: the key's public half is not pinned in {pinned}; pin it "
              "there (docs/release.md) or pass --pin for a test build", file=sys.stderr)
        return 1
    init = (package / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"', init, re.M)
    if not match:
        print(f"make_manifest: no __version__ in {package / '__init__.py'}", file=sys.stderr)
        return 1
    python = args.python or [f"{sys.version_info[0]}.{sys.version_info[1]}"]
    signed = build_manifest(package, version=match.group(1), built=build_date(), python=python)
    out = package / MANIFEST_NAME
    out.write_bytes(dump_manifest(sign_manifest(signed, key)))
    report = verify_tree(package)
    if not report.ok:  # e.g. the package changed while it was being listed
        print(f"make_manifest: {report.sentence}", file=sys.stderr)
        return 1
    print(f"wrote {out}: {len(signed['files'])} files, ceremony {signed['version']}, built "
          f"{signed['built']}, signed by release key {key_id(key.public_key())[:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
