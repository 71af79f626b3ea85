"""Participant identity keys held in plain files: for rehearsals and tests only.

Real custodians sign with their smartcard (a later adapter); a key file is allowed only in a
rehearsal, and every file this module writes says so in its first line.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.errors import AnswersError
from ceremony.model.statements import encode_key

BANNER = b"# REHEARSAL identity key: never use for a real ceremony\n"


class KeyFileSigner:
    def __init__(self, participant: str, key: Ed25519PrivateKey) -> None:
        self.participant = participant
        self._key = key

    @property
    def public_key(self) -> str:
        return encode_key(self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw))

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    @classmethod
    def generate(cls, participant: str, seed: bytes) -> KeyFileSigner:
        return cls(participant, Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def load(cls, participant: str, path: Path) -> KeyFileSigner:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise AnswersError(f"the identity key of {participant!r} cannot be read "
                               f"({exc.strerror})", file=str(path)) from None
        pem = data[data.find(b"-----BEGIN"):]
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise AnswersError(f"the identity key of {participant!r} is not a PEM private "
                               "key", file=str(path)) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise AnswersError(f"the identity key of {participant!r} is not Ed25519",
                               file=str(path))
        return cls(participant, key)

    def save(self, path: Path) -> None:
        pem = self._key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(BANNER + pem)
