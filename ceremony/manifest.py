"""Release integrity: the signed manifest of the package's files (docs/release.md).

A release ships ``ceremony/MANIFEST.json``: every file of the installed package with its
SHA-256, the version, the build date and the Python versions it was built for, signed
with Ed25519 by the release key. The public half of that key is pinned in the package at
``ceremony/data/release-key.pub`` (one or more PEM public keys). ``ceremony selftest`` and
``ceremony attest`` check the installed tree against it and name every file that was
modified, removed or added (CER-ATTEST-TOOL).

The signature is over ``SIGNING_PREFIX + canonical_bytes(signed)`` (RFC 8785), so the file
may be pretty-printed without breaking it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ceremony.canonical import CanonicalError, canonical_bytes

FORMAT = "ceremony-manifest/1"
SIGNING_PREFIX = b"ceremony release manifest v1\n"
MANIFEST_NAME = "MANIFEST.json"
RELEASE_KEY_NAME = "data/release-key.pub"
PACKAGE_DIR = Path(__file__).resolve().parent
# Never listed: the manifest itself, and what Python writes next to the sources.
_SKIP_DIRS = {"__pycache__"}
_SKIP_SUFFIXES = (".pyc", ".pyo")


def package_files(package_dir: Path) -> Iterator[Path]:
    """Every file of the package, sorted by relative path, the manifest excluded."""
    found = []
    for path in package_dir.rglob("*"):
        rel = path.relative_to(package_dir)
        if any(part in _SKIP_DIRS for part in rel.parts) or path.name.endswith(_SKIP_SUFFIXES):
            continue
        if rel.as_posix() == MANIFEST_NAME or path.is_dir():
            continue
        found.append(path)
    return iter(sorted(found, key=lambda p: p.relative_to(package_dir).as_posix()))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_tree(package_dir: Path) -> dict[str, str]:
    """Relative POSIX path -> SHA-256 of every package file."""
    return {p.relative_to(package_dir).as_posix(): file_sha256(p)
            for p in package_files(package_dir)}


def build_manifest(package_dir: Path, *, version: str, built: datetime,
                   python: list[str]) -> dict[str, Any]:
    """The signed part of a manifest for the tree at ``package_dir``."""
    return {
        "format": FORMAT,
        "package": "ceremony",
        "version": version,
        "built": built.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": python,
        "files": hash_tree(package_dir),
    }


def key_id(public: Ed25519PublicKey) -> str:
    """SHA-256 of the raw 32-byte public key, hex: how manifests and people name a key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def sign_manifest(signed: dict[str, Any], private: Ed25519PrivateKey) -> dict[str, Any]:
    """The manifest file's content: the signed part and one Ed25519 signature over it."""
    signature = private.sign(SIGNING_PREFIX + canonical_bytes(signed))
    return {"signed": signed, "signatures": [
        {"keyid": key_id(private.public_key()),
         "sig": base64.b64encode(signature).decode("ascii")}]}


def dump_manifest(manifest: dict[str, Any]) -> bytes:
    """Stable bytes for the file: sorted keys, two-space indent, a final newline."""
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def load_public_keys(path: Path) -> list[Ed25519PublicKey]:
    """Every Ed25519 PEM public key in ``path`` (several during a key rotation)."""
    text = path.read_bytes()
    keys = []
    marker = b"-----BEGIN PUBLIC KEY-----"
    for chunk in text.split(marker)[1:]:
        end = chunk.find(b"-----END PUBLIC KEY-----")
        if end < 0:
            raise ValueError(f"{path}: a PEM public key is not closed")
        pem = marker + chunk[:end] + b"-----END PUBLIC KEY-----\n"
        key = serialization.load_pem_public_key(pem)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{path}: a release key is not an Ed25519 key")
        keys.append(key)
    if not keys:
        raise ValueError(f"{path}: holds no PEM public key")
    return keys


@dataclass(frozen=True)
class TreeReport:
    """The installed tree against the manifest. ``state`` says which sentence applies."""

    state: str  # ok | unsigned | no-key | malformed | bad-signature | mismatch
    package_dir: Path
    sentence: str
    modified: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    files: int = 0
    version: str = ""
    built: datetime | None = None
    python: tuple[str, ...] = ()
    key: str = ""
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state == "ok"


def _names(paths: tuple[str, ...], limit: int = 5) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def verify_tree(package_dir: Path = PACKAGE_DIR, manifest_path: Path | None = None,
                keys_path: Path | None = None) -> TreeReport:
    """Check every file under ``package_dir`` against its signed manifest.

    The manifest must parse, carry a valid signature by a pinned release key, and list
    exactly the files present with their SHA-256; anything else is a failed state whose
    sentence names the files.
    """
    manifest_path = manifest_path or package_dir / MANIFEST_NAME
    keys_path = keys_path or package_dir / RELEASE_KEY_NAME

    def report(state: str, sentence: str, **kw: Any) -> TreeReport:
        return TreeReport(state, package_dir, sentence, **kw)

    if not manifest_path.is_file():
        return report("unsigned", f"there is no signed manifest ({manifest_path}): this is a "
                      "development tree, not a release")
    try:
        keys = load_public_keys(keys_path)
    except FileNotFoundError:
        return report("no-key", f"no release key is pinned ({keys_path}), so the manifest "
                      "cannot be checked")
    except ValueError as exc:
        return report("no-key", f"the pinned release key cannot be read ({exc})")
    try:
        doc = json.loads(manifest_path.read_bytes(), parse_float=_no_float)
        signed = doc["signed"]
        signatures = doc["signatures"]
        message = SIGNING_PREFIX + canonical_bytes(signed)
        if signed.get("format") != FORMAT or not isinstance(signed.get("files"), dict):
            raise ValueError("not a ceremony manifest")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, CanonicalError) as exc:
        return report("malformed", f"the manifest {manifest_path} cannot be read ({exc})")
    by_id = {key_id(k): k for k in keys}
    good = ""
    for sig in signatures if isinstance(signatures, list) else []:
        key = by_id.get(sig.get("keyid", "")) if isinstance(sig, dict) else None
        if key is None:
            continue
        try:
            key.verify(base64.b64decode(sig.get("sig", ""), validate=True), message)
        except (InvalidSignature, binascii.Error, ValueError):
            continue
        good = key_id(key)
        break
    if not good:
        return report("bad-signature", f"the manifest {manifest_path} is not signed by a "
                      "pinned release key (its signature does not verify)")
    expected: dict[str, str] = signed["files"]
    actual = hash_tree(package_dir)
    modified = tuple(sorted(p for p in expected if p in actual and actual[p] != expected[p]))
    missing = tuple(sorted(p for p in expected if p not in actual))
    unexpected = tuple(sorted(p for p in actual if p not in expected))
    try:
        built = datetime.strptime(str(signed.get("built")), "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=UTC)
    except ValueError:
        return report("malformed", f"the manifest's build date {signed.get('built')!r} is "
                      "not a UTC time like 2026-01-31T12:00:00Z")
    version = str(signed.get("version", ""))
    python = tuple(str(v) for v in signed.get("python", []))
    if modified or missing or unexpected:
        parts = []
        if modified:
            parts.append(f"modified: {_names(modified)}")
        if missing:
            parts.append(f"missing: {_names(missing)}")
        if unexpected:
            parts.append(f"not in the manifest: {_names(unexpected)}")
        state, sentence = "mismatch", ("the installed tool differs from its signed manifest ("
                                       + "; ".join(parts) + ")")
    else:
        state, sentence = "ok", (f"all {len(expected)} installed files match the signed "
                                 f"manifest of ceremony {version} (release key {good[:16]})")
    return TreeReport(state, package_dir, sentence, modified, missing, unexpected,
                      len(expected), version, built, python, good)


def _no_float(text: str) -> Any:
    raise ValueError(f"a floating-point number ({text}) is not allowed")
