"""Custodian identity keys on OpenPGP smartcards (OpenPGP card specification 3.4), via PC/SC.

A custodian's identity key is the card's signature key (key slot 1), an Ed25519 key made
on the card at enrolment; the ceremony's approvals are plain Ed25519 signatures by it, so the
verifier checks them like any other identity signature. This module speaks the card's own
commands through pyscard (SELECT, GET DATA, PUT DATA, VERIFY, GENERATE ASYMMETRIC KEY PAIR,
PSO: COMPUTE DIGITAL SIGNATURE) and reaches pcscd like GnuPG's scdaemon does, so any card
that GnuPG can use for an Ed25519 signature key works: YubiKey 5 (firmware 5.2.3 or later),
Nitrokey 3, Gnuk 1.2 or later (docs/custodian-guide.md).

Every failure of the PC/SC service, the reader or the card becomes a ``CardError`` (exit 3)
with one plain sentence. PINs travel in bytearrays that are wiped once the card has them;
a session ends by resetting the card, so no verified PIN outlives it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ceremony.canonical import sha256_hex
from ceremony.errors import CardError
from ceremony.model.statements import encode_key

OPENPGP_AID = bytes.fromhex("D27600012401")
ED25519_OID = bytes.fromhex("2B06010401DA470F01")  # 1.3.6.1.4.1.11591.15.1
ED25519_ATTRIBUTES = bytes([0x16]) + ED25519_OID  # algorithm 22 (EdDSA), then the curve OID
SIGNATURE_KEY_CRT = bytes([0xB6, 0x00])
SHORT_MAX = 255
DEFAULT_MAX_PIN = 127

# Status words (OpenPGP card 3.4, 7.1; ISO 7816-4).
SW_OK = 0x9000
SW_WRONG_LENGTH = 0x6700
SW_SECURITY_STATUS = 0x6982
SW_BLOCKED = 0x6983
SW_CONDITIONS = 0x6985
SW_INCORRECT_DATA = 0x6A80
SW_NOT_FOUND = 0x6A82
SW_DO_NOT_FOUND = 0x6A88
SW_WRONG_P1P2 = 0x6B00
SW_INS_UNSUPPORTED = 0x6D00

# The private use DO a share is written to: PW1 (82) guards both reading and writing it
# (OpenPGP card 3.4, 4.4.1); 0101 is readable by anyone, 0102 and 0104 need the admin PIN.
SHARE_DO = 0x0103

MANUFACTURERS = {0x0000: "test card", 0x0001: "PPC Card Systems", 0x0002: "Prism",
                 0x0003: "OpenFortress", 0x0004: "Wewid", 0x0005: "ZeitControl",
                 0x0006: "Yubico", 0x0007: "OpenKMS", 0x0008: "LogoEmail",
                 0x000F: "Nitrokey", 0x000B: "Free Software Initiative of Japan (Gnuk)",
                 0x002A: "Magrathea", 0xF1D0: "CanoKeys", 0xFFFF: "test card"}

PIN = "PIN"
ADMIN_PIN = "admin PIN"


def _scard() -> Any:
    """pyscard's PC/SC binding, imported on first use so the CLI starts without it."""
    try:
        import smartcard.scard as scard
    except ImportError:  # pragma: no cover - pyscard is a dependency
        raise CardError("pyscard, the PC/SC library for Python, is not installed",
                        hint="run scripts/setup.sh (it needs libpcsclite-dev to build)") from None
    return scard


def _pcsc_sentence(scard: Any, hresult: int, reader: str | None) -> tuple[str, str]:
    """One plain sentence and a hint for a PC/SC error code."""
    where = f"reader {reader!r}" if reader else "the reader"
    if hresult == scard.SCARD_E_NO_SERVICE:
        return ("the smartcard service (pcscd) is not running",
                "start it (systemctl start pcscd.socket, or pcscd as root) and try again")
    if hresult == scard.SCARD_E_NO_READERS_AVAILABLE:
        return "no smartcard reader is connected", "plug in the card or its reader"
    if hresult in (scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_REMOVED_CARD):
        return f"there is no card in {where}", "insert the custodian's card and try again"
    if hresult in (scard.SCARD_E_UNKNOWN_READER, scard.SCARD_E_READER_UNAVAILABLE):
        return f"{where} is not available (unplugged?)", "plug it in again and retry"
    if hresult == scard.SCARD_E_SHARING_VIOLATION:
        return (f"another program is using the card in {where}",
                "close it (for GnuPG: gpgconf --kill scdaemon) and try again")
    if hresult == scard.SCARD_W_UNRESPONSIVE_CARD:
        return f"the card in {where} does not answer", "take it out, insert it again, retry"
    if hresult == scard.SCARD_W_RESET_CARD:
        return f"the card in {where} was reset by another program", "try again"
    message = str(scard.SCardGetErrorMessage(hresult))
    return (f"the smartcard reader failed ({message.rstrip('. ')})",
            "take the card out, insert it again, and retry")


def list_readers() -> list[str]:
    """The PC/SC readers connected now (empty when there is none)."""
    scard = _scard()
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        message, hint = _pcsc_sentence(scard, hresult, None)
        raise CardError(message, hint=hint)
    try:
        hresult, readers = scard.SCardListReaders(context, [])
        if hresult == scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        if hresult != scard.SCARD_S_SUCCESS:
            message, hint = _pcsc_sentence(scard, hresult, None)
            raise CardError(message, hint=hint)
        return [str(r) for r in readers]
    finally:
        scard.SCardReleaseContext(context)


# ------------------------------------------------------------------------- TLV and data


def parse_tlv(data: bytes) -> dict[int, bytes]:
    """BER-TLV objects at one level, tag -> value (1- or 2-byte tags, definite lengths)."""
    out: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        if data[i] in (0x00, 0xFF):  # padding between objects
            i += 1
            continue
        tag = data[i]
        i += 1
        if tag & 0x1F == 0x1F:
            tag = tag << 8 | data[i]
            i += 1
        if i >= len(data):
            raise CardError("the card sent malformed data (a truncated TLV object)")
        length = data[i]
        i += 1
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(data[i:i + n], "big")
            i += n
        if i + length > len(data):
            raise CardError("the card sent malformed data (a TLV object overruns its parent)")
        out[tag] = data[i:i + length]
        i += length
    return out


def openpgp_fingerprint(public_key: bytes, created: int) -> bytes:
    """The OpenPGP v4 fingerprint (RFC 4880 12.2) of an Ed25519 key as GnuPG writes it to a
    card: SHA-1 of the public-key packet (algorithm 22 EdDSA, the curve OID, the point as
    an MPI of 0x40 || the 32 key bytes) created at ``created``."""
    point = b"\x40" + public_key
    body = (b"\x04" + created.to_bytes(4, "big") + b"\x16" + bytes([len(ED25519_OID)])
            + ED25519_OID + (len(point) * 8 - 1).to_bytes(2, "big") + point)
    # 263 bits: the MPI's length counts from the highest set bit of the 0x40 prefix.
    return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body,
                        usedforsecurity=False).digest()


def describe_attributes(attributes: bytes) -> str:
    """A key's algorithm attributes (C1-C3) in words: "ed25519", "rsa2048", ..."""
    if attributes.rstrip(b"\xff") == ED25519_ATTRIBUTES:
        return "ed25519"
    if len(attributes) >= 3 and attributes[0] == 0x01:
        return f"rsa{int.from_bytes(attributes[1:3], 'big')}"
    names = {0x12: "ecdh", 0x13: "ecdsa", 0x16: "eddsa"}
    return f"{names.get(attributes[0], 'an unknown algorithm')} ({attributes.hex()})" \
        if attributes else "no algorithm"


def kdf_pin(pin: bytearray, kdf_do: bytes, admin: bool) -> bytearray:
    """The PIN as a card with the KDF-DO switched on expects it (OpenPGP card 3.4, 4.3.2):
    the OpenPGP iterated and salted S2K (RFC 4880 3.7.1.3) of the PIN, SHA-256 or SHA-512,
    with the salt for PW1 (84) or PW3 (86, else PW1's). Unchanged when KDF is off."""
    objects = parse_tlv(kdf_do)
    algorithm = objects.get(0x81, b"\x00")
    if algorithm == b"\x00":
        return bytearray(pin)
    if algorithm != b"\x03":
        raise CardError("the card asks for a PIN key derivation this tool does not know "
                        f"(KDF algorithm {algorithm.hex()})")
    hash_name = {b"\x08": "sha256", b"\x0a": "sha512"}.get(objects.get(0x82, b""))
    if hash_name is None:
        raise CardError("the card's PIN key derivation names an unknown hash")
    count = int.from_bytes(objects.get(0x83, b""), "big")
    salt = objects[0x86] if admin and 0x86 in objects else objects.get(0x84, b"")
    block = bytearray(salt) + pin
    total = max(count, len(block))
    h = hashlib.new(hash_name)
    full, rest = divmod(total, len(block))
    for _ in range(full):
        h.update(block)
    h.update(block[:rest])
    _wipe(block)
    return bytearray(h.digest())


def _wipe(buffer: bytearray | list[int]) -> None:
    for i in range(len(buffer)):
        buffer[i] = 0


@dataclass(frozen=True)
class CardInfo:
    """What the card says about itself and its signature key, without any PIN."""

    reader: str
    version: str  # of the OpenPGP card specification the card implements, e.g. "3.4"
    manufacturer: int
    serial: str  # 8 hex digits, as GnuPG shows it
    algorithm: str  # of the signature key slot: "ed25519", "rsa2048" ...
    attributes: bytes
    fingerprint: bytes  # 20 bytes as recorded on the card (zeros: none recorded)
    generated: int  # seconds since 1970 as recorded (0: none)
    pin_tries: int
    admin_tries: int
    max_pin: int
    max_admin_pin: int
    pin_once: bool  # the PIN is good for one signature only
    signature_counter: int
    chaining: bool
    extended: int  # the longest extended command the card takes; 0 if it takes none
    attributes_changeable: bool
    kdf: bytes  # the KDF-DO, b"" when the card has none
    private_dos: bool = False  # the private use DOs 0101-0104 (a share goes to 0103)
    max_special: int = 0  # their size in bytes (extended capabilities, bytes 7-8)

    @property
    def manufacturer_name(self) -> str:
        return MANUFACTURERS.get(self.manufacturer, f"manufacturer 0x{self.manufacturer:04X}")

    @property
    def has_fingerprint(self) -> bool:
        return any(self.fingerprint)


@dataclass(frozen=True)
class CardIdentity:
    """A custodian's public identity as their card holds it."""

    public_key: bytes  # 32 raw Ed25519 bytes
    info: CardInfo

    @property
    def encoded(self) -> str:
        """As the ceremony script's participant ``public_key`` writes it."""
        return encode_key(self.public_key)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the public key, hex: the way the ceremony names every key."""
        return sha256_hex(self.public_key)

    @property
    def openpgp_fingerprint(self) -> str:
        """The fingerprint GnuPG shows for the card's signature key ("" if none recorded)."""
        return self.info.fingerprint.hex().upper() if self.info.has_fingerprint else ""


class OpenPgpCard:
    """A session with the OpenPGP application of the card in one reader.

    Connects exclusively (no other program can slip a command between our VERIFY and our
    signature) and disconnects by resetting the card, which forgets any verified PIN.
    """

    def __init__(self, reader: str | None = None) -> None:
        self._scard = scard = _scard()
        hresult, self._context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult != scard.SCARD_S_SUCCESS:
            message, hint = _pcsc_sentence(scard, hresult, reader)
            raise CardError(message, hint=hint)
        self._card: Any = None
        self._lost = False  # a command failed on the way: the card may have been pulled out
        try:
            self.reader = self._choose_reader(reader)
            self._connect()
            self._info: CardInfo | None = None
            self._select()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> OpenPgpCard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        scard = self._scard
        if self._card is not None:
            # A card taken out lost its power (and any verified PIN) already; resetting it
            # is refused, and vpcd's reader stops taking cards after such a reset.
            gone = self._lost and not self._card_present(self.reader)
            scard.SCardDisconnect(self._card, scard.SCARD_LEAVE_CARD if gone
                                  else scard.SCARD_RESET_CARD)
            self._card = None
        if self._context is not None:
            scard.SCardReleaseContext(self._context)
            self._context = None

    # ----------------------------------------------------------------- transport

    def _choose_reader(self, wanted: str | None) -> str:
        scard = self._scard
        hresult, found = scard.SCardListReaders(self._context, [])
        if hresult != scard.SCARD_S_SUCCESS:
            message, hint = _pcsc_sentence(scard, hresult, wanted)
            raise CardError(message, hint=hint)
        readers: list[str] = [str(r) for r in found]
        if wanted is not None:
            if wanted not in readers:
                raise CardError(f"there is no reader named {wanted!r}",
                                hint="connected readers: " + "; ".join(readers))
            return wanted
        with_card = [r for r in readers if self._card_present(r)]
        if len(with_card) == 1:
            return with_card[0]
        if not with_card:
            raise CardError("there is no card in any reader",
                            hint="insert the custodian's card (readers: "
                                 + "; ".join(readers) + ")")
        raise CardError("more than one reader holds a card",
                        hint="name one with --reader: " + "; ".join(with_card))

    def _card_present(self, reader: str) -> bool:
        scard = self._scard
        hresult, states = scard.SCardGetStatusChange(
            self._context, 0, [(reader, scard.SCARD_STATE_UNAWARE)])
        return hresult == scard.SCARD_S_SUCCESS and bool(
            states[0][1] & scard.SCARD_STATE_PRESENT)

    def _taken_out(self, wait: float = 1.0) -> bool:
        """Whether the reader shows no card within ``wait`` seconds (pcscd notices a card
        taken out mid-command at its next look at the reader)."""
        deadline = time.monotonic() + wait
        while self._card_present(self.reader):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def _connect(self) -> None:
        scard = self._scard
        hresult, self._card, protocol = scard.SCardConnect(
            self._context, self.reader, scard.SCARD_SHARE_EXCLUSIVE,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1)
        if hresult != scard.SCARD_S_SUCCESS:
            self._card = None
            message, hint = _pcsc_sentence(scard, hresult, self.reader)
            raise CardError(message, hint=hint)
        self._pci = scard.SCARD_PCI_T1 if protocol == scard.SCARD_PROTOCOL_T1 \
            else scard.SCARD_PCI_T0

    def _transmit_raw(self, apdu: list[int]) -> tuple[bytes, int]:
        scard = self._scard
        hresult, response = scard.SCardTransmit(self._card, self._pci, apdu)
        if hresult != scard.SCARD_S_SUCCESS:
            self._lost = True
            message, hint = _pcsc_sentence(scard, hresult, self.reader)
            raise CardError(message, hint=hint)
        if len(response) < 2:
            self._lost = True
            if self._taken_out():
                raise CardError(f"the card was taken out of reader {self.reader!r} in the "
                                "middle of a command",
                                hint="insert it again and retry; the command did not complete")
            raise CardError(f"the card in reader {self.reader!r} gave a malformed answer")
        return bytes(response[:-2]), response[-2] << 8 | response[-1]

    def transmit(self, ins: int, p1: int, p2: int, data: bytes | bytearray = b"",
                 *, le: bool = True) -> tuple[bytes, int]:
        """Send one command (chained or extended when the data is long), follow 61XX with
        GET RESPONSE and 6CXX with the right Le; return (data, status word). The command
        buffer is wiped afterwards: it may hold a PIN."""
        if len(data) <= SHORT_MAX:
            return self._exchange(self._short(0x00, ins, p1, p2, data, le))
        info = self.info()
        if info.chaining:
            links = [data[i:i + SHORT_MAX] for i in range(0, len(data), SHORT_MAX)]
            for link in links[:-1]:
                out, sw = self._exchange(self._short(0x10, ins, p1, p2, link, False))
                if sw != SW_OK:
                    return out, sw
            return self._exchange(self._short(0x00, ins, p1, p2, links[-1], le))
        if info.extended and len(data) <= info.extended:
            apdu = [0x00, ins, p1, p2, 0x00, len(data) >> 8, len(data) & 0xFF, *data]
            if le:
                apdu += [0x00, 0x00]
            return self._exchange(apdu)
        raise CardError(f"the card cannot take {len(data)} bytes in one command (it "
                        "supports neither command chaining nor long enough extended APDUs)",
                        hint="use a card that follows OpenPGP card 3.x (docs/custodian-guide.md)")

    @staticmethod
    def _short(cla: int, ins: int, p1: int, p2: int, data: bytes | bytearray,
               le: bool) -> list[int]:
        apdu = [cla, ins, p1, p2]
        if data:
            apdu += [len(data), *data]
        if le:
            apdu.append(0x00)
        return apdu

    def _exchange(self, apdu: list[int]) -> tuple[bytes, int]:
        try:
            out, sw = self._transmit_raw(apdu)
            if sw >> 8 == 0x6C:  # wrong Le: the card says how many bytes it has
                retry = [*apdu[:4], sw & 0xFF] if len(apdu) <= 5 else [*apdu[:-1], sw & 0xFF]
                out, sw = self._transmit_raw(retry)
            collected = out
            while sw >> 8 == 0x61:
                out, sw = self._transmit_raw([0x00, 0xC0, 0x00, 0x00, sw & 0xFF])
                collected += out
            return collected, sw
        finally:
            _wipe(apdu)

    # ------------------------------------------------------------------ commands

    def _select(self) -> None:
        _, sw = self.transmit(0xA4, 0x04, 0x00, OPENPGP_AID, le=False)
        if sw == SW_NOT_FOUND:
            raise CardError(f"the card in reader {self.reader!r} has no OpenPGP application",
                            hint="custodian cards are OpenPGP cards: YubiKey 5, Nitrokey 3, "
                                 "Gnuk (docs/custodian-guide.md)")
        self._check(sw, "the OpenPGP application")

    def _check(self, sw: int, what: str) -> None:
        if sw == SW_OK:
            return
        raise CardError(f"the card refused {what} (status {sw:04X})",
                        hint="take the card out, insert it again, and retry; if it persists, "
                             "the card may not follow OpenPGP card 3.x")

    def get_data(self, tag: int) -> bytes:
        out, sw = self.transmit(0xCA, tag >> 8, tag & 0xFF)
        if sw == SW_DO_NOT_FOUND:
            return b""
        self._check(sw, f"to read data object {tag:04X}")
        return out

    def info(self) -> CardInfo:
        """The application related data (6E) and the signature counter (7A), parsed."""
        if self._info is not None:
            return self._info
        app = parse_tlv(self.get_data(0x006E))
        app = parse_tlv(app[0x6E]) if set(app) == {0x6E} else app  # some cards wrap it
        aid = app.get(0x4F, b"")
        if len(aid) != 16 or not aid.startswith(OPENPGP_AID):
            raise CardError(f"the card in reader {self.reader!r} sent a malformed OpenPGP "
                            "application identifier")
        discretionary = parse_tlv(app.get(0x73, b""))
        pw_status = discretionary.get(0xC4, b"")
        if len(pw_status) < 7:
            pw_status = self.get_data(0x00C4)
        if len(pw_status) < 7:
            raise CardError("the card did not report its PIN status")
        caps = discretionary.get(0xC0, b"\x00")
        fingerprints = discretionary.get(0xC5, b"\x00" * 60)
        dates = discretionary.get(0xCD, b"\x00" * 12)
        attributes = discretionary.get(0xC1, b"")
        historical = app.get(0x5F52) or self.get_data(0x5F52)
        card_caps = _card_capabilities(historical)
        ext_info = parse_tlv(app.get(0x7F66) or self.get_data(0x7F66))
        extended = int.from_bytes(ext_info.get(0x02, b""), "big") \
            if card_caps & 0x40 else 0
        counter = parse_tlv(self.get_data(0x007A)).get(0x93, b"")
        kdf = self.get_data(0x00F9) if caps[0] & 0x01 else b""
        self._info = CardInfo(
            reader=self.reader, version=f"{aid[6]}.{aid[7]}",
            manufacturer=int.from_bytes(aid[8:10], "big"), serial=aid[10:14].hex().upper(),
            algorithm=describe_attributes(attributes), attributes=attributes,
            fingerprint=fingerprints[:20], generated=int.from_bytes(dates[:4], "big"),
            pin_tries=pw_status[4], admin_tries=pw_status[6], max_pin=pw_status[1] or
            DEFAULT_MAX_PIN, max_admin_pin=pw_status[3] or DEFAULT_MAX_PIN,
            pin_once=pw_status[0] == 0, signature_counter=int.from_bytes(counter, "big"),
            chaining=bool(card_caps & 0x80), extended=extended,
            attributes_changeable=bool(caps[0] & 0x04), kdf=kdf,
            private_dos=bool(caps[0] & 0x08),
            max_special=int.from_bytes(caps[6:8], "big") if len(caps) >= 8 else 0)
        return self._info

    def _forget_info(self) -> None:
        self._info = None

    def public_key(self) -> bytes:
        """The signature key's 32 public bytes, read from the card (no PIN needed)."""
        info = self.info()
        if info.algorithm != "ed25519":
            raise CardError(f"the card's signature key is {info.algorithm}, not Ed25519",
                            hint="enroll with --generate (and the admin PIN) to make an "
                                 "Ed25519 key on the card; it replaces the signature key")
        out, sw = self.transmit(0x47, 0x81, 0x00, SIGNATURE_KEY_CRT)
        if sw == SW_DO_NOT_FOUND:
            raise CardError("the card has no signature key yet",
                            hint="enroll with --generate (and the admin PIN) to make one")
        self._check(sw, "to read its signature key")
        return _public_from_template(out)

    def identity(self) -> CardIdentity:
        """The custodian's public key, checked against the fingerprint the card records."""
        public = self.public_key()
        info = self.info()
        if info.has_fingerprint and info.generated and \
                openpgp_fingerprint(public, info.generated) != info.fingerprint:
            raise CardError("the fingerprint the card records does not belong to its "
                            "signature key",
                            hint="the key was replaced without updating the fingerprint; "
                                 "enroll with --generate to make a new, consistent key")
        return CardIdentity(public, info)

    def verify(self, pin: bytearray, *, admin: bool = False, data: bool = False) -> None:
        """VERIFY PW1 for signing (81), PW1 for data objects (82, with ``data``) or PW3
        (83). ``pin`` is wiped, whatever happens."""
        what = ADMIN_PIN if admin else PIN
        try:
            info = self.info()
            limit = info.max_admin_pin if admin else info.max_pin
            if not pin:
                raise CardError(f"the {what} is empty")
            if len(pin) > limit:
                raise CardError(f"the {what} is longer than the card allows ({limit} bytes)",
                                hint="check the PIN file: it should hold the PIN alone")
            tries = info.admin_tries if admin else info.pin_tries
            if tries == 0:
                raise _blocked(what)
            secret = kdf_pin(pin, info.kdf, admin) if info.kdf else bytearray(pin)
            try:
                reference = 0x83 if admin else 0x82 if data else 0x81
                _, sw = self.transmit(0x20, 0x00, reference, secret, le=False)
            finally:
                _wipe(secret)
        finally:
            _wipe(pin)
        self._forget_info()
        if sw == SW_OK:
            return
        if sw == SW_BLOCKED:
            raise _blocked(what)
        if sw >> 4 == 0x63C:
            left = sw & 0x0F
        elif sw == SW_SECURITY_STATUS:
            status = self.get_data(0x00C4)
            left = status[6 if admin else 4] if len(status) >= 7 else -1
        elif sw == SW_WRONG_LENGTH:
            raise CardError(f"the card refused the {what}: its length is not one the card "
                            "accepts", hint="check the PIN file: it should hold the PIN alone")
        else:
            self._check(sw, f"the {what}")
            return
        if left == 0:
            raise _blocked(what)
        noun = "tries" if left != 1 else "try"
        text = f"the card refused the {what}; {left} {noun} left" if left >= 0 \
            else f"the card refused the {what}"
        raise CardError(text, hint="type it again carefully" + (
            "; one more wrong try blocks the card" if left == 1 else ""))

    def sign(self, message: bytes) -> bytes:
        """PSO: COMPUTE DIGITAL SIGNATURE with the signature key over ``message`` (EdDSA
        signs the message itself). Needs ``verify(pin)`` first."""
        out, sw = self.transmit(0x2A, 0x9E, 0x9A, message)
        self._forget_info()
        if sw == SW_SECURITY_STATUS:
            raise CardError("the card will not sign before its PIN is verified",
                            hint="enter the custodian's PIN for this signature")
        if sw == SW_DO_NOT_FOUND:
            raise CardError("the card has no signature key yet",
                            hint="enroll with --generate (and the admin PIN) to make one")
        if sw == SW_CONDITIONS:
            raise CardError("the card refused to sign (its signature key is not usable)",
                            hint="check the key with `ceremony custodian enroll`")
        self._check(sw, "to sign")
        if len(out) != 64:
            raise CardError(f"the card returned a {len(out)}-byte signature, not an Ed25519 one")
        return out

    def generate(self, admin_pin: bytearray, *, now: int | None = None) -> CardIdentity:
        """Make a new Ed25519 signature key on the card (replacing any), record its
        OpenPGP fingerprint and date as GnuPG does, and return the new identity.
        ``admin_pin`` (PW3) is wiped."""
        self.verify(admin_pin, admin=True)
        info = self.info()
        if info.attributes.rstrip(b"\xff") != ED25519_ATTRIBUTES:
            if not info.attributes_changeable:
                raise CardError(f"the card's signature key slot is fixed to {info.algorithm} "
                                "and cannot hold an Ed25519 key",
                                hint="use a card that supports Ed25519 (docs/custodian-guide.md)")
            _, sw = self.transmit(0xDA, 0x00, 0xC1, ED25519_ATTRIBUTES, le=False)
            if sw in (SW_INCORRECT_DATA, SW_CONDITIONS):
                raise CardError("the card does not support Ed25519 signature keys",
                                hint="YubiKey 5 needs firmware 5.2.3 or later; see "
                                     "docs/custodian-guide.md for cards that do")
            self._check(sw, "to switch its signature key to Ed25519")
            self._forget_info()
        out, sw = self.transmit(0x47, 0x80, 0x00, SIGNATURE_KEY_CRT)
        if sw == SW_SECURITY_STATUS:
            raise CardError("the card did not accept the admin PIN for key generation")
        if sw in (SW_CONDITIONS, SW_INCORRECT_DATA):
            raise CardError("the card cannot generate an Ed25519 signature key",
                            hint="see docs/custodian-guide.md for cards that can")
        self._check(sw, "to generate a key")
        public = _public_from_template(out)
        created = int(time.time()) if now is None else now
        for tag, value in ((0x00C7, openpgp_fingerprint(public, created)),
                           (0x00CE, created.to_bytes(4, "big"))):
            _, sw = self.transmit(0xDA, tag >> 8, tag & 0xFF, value, le=False)
            self._check(sw, "to record the new key's fingerprint")
        self._forget_info()
        return self.identity()

    # ------------------------------------------------------- a share in DO 0103

    def _share_room(self, size: int) -> None:
        """Refuse, before any PIN is spent, a card without private use DOs or with too
        small ones for ``size`` bytes."""
        info = self.info()
        if not info.private_dos:
            raise CardError(f"the card in reader {self.reader!r} has no private data objects "
                            "(OpenPGP card DO 0101-0104) to hold a share",
                            hint="give this custodian a share sheet (delivery = [\"sheet\"] in "
                                 "the script), or a card that has them (docs/card-shares.md)",
                            requirement="CER-SHARE-CARD")
        if size > info.max_special:
            raise CardError(f"the card's private data objects hold {info.max_special} bytes; "
                            f"the share needs {size}",
                            hint="OpenPGP cards 3.x give at least 254; use another card or a "
                                 "share sheet (docs/card-shares.md)", requirement="CER-SHARE-CARD")

    def write_share(self, packed: bytes | bytearray, pin: bytearray) -> None:
        """Write ``packed`` (a share in the format of adapters/card_shares.py) to the
        private use DO 0103 after VERIFY PW1 (82), then read it back and compare. ``pin``
        is wiped; the bytes are never logged, echoed or put in an error. An empty ``packed``
        empties the DO."""
        try:
            self._share_room(len(packed))
        except CardError:
            _wipe(pin)
            raise
        self.verify(pin, data=True)
        _, sw = self.transmit(0xDA, SHARE_DO >> 8, SHARE_DO & 0xFF, packed, le=False)
        if sw == SW_SECURITY_STATUS:
            raise CardError("the card did not accept the PIN for its data objects",
                            requirement="CER-SHARE-CARD")
        if sw == SW_WRONG_LENGTH:
            raise CardError("the card refused the share: it is longer than its data object",
                            hint="use another card or a share sheet", requirement="CER-SHARE-CARD")
        if sw in (SW_DO_NOT_FOUND, SW_WRONG_P1P2, SW_INS_UNSUPPORTED):
            raise CardError("the card has no private data object 0103 to hold a share",
                            hint="use a card that has the private use DOs, or a share sheet",
                            requirement="CER-SHARE-CARD")
        self._check(sw, "to store the share")
        back = self._read_do(SHARE_DO)
        try:
            if not hmac.compare_digest(bytes(back), bytes(packed)):
                raise CardError("the share read back from the card is not the one written",
                                hint="the card may be faulty: write the share again or give "
                                     "this custodian a share sheet",
                                requirement="CER-SHARE-CARD")
        finally:
            _wipe(back)

    def read_share(self, pin: bytearray) -> bytearray:
        """The bytes in the private use DO 0103, after VERIFY PW1 (82); ``pin`` is wiped.
        The caller wipes what it gets. Empty when nothing was written."""
        info = self.info()
        if not info.private_dos:
            _wipe(pin)
            raise CardError(f"the card in reader {self.reader!r} has no private data objects, "
                            "so it holds no share", hint="is it the custodian's card?",
                            requirement="CER-SHARE-CARD")
        self.verify(pin, data=True)
        return self._read_do(SHARE_DO)

    def _read_do(self, tag: int) -> bytearray:
        """GET DATA into a bytearray; pyscard's answer list is wiped as soon as copied."""
        scard = self._scard
        apdu = [0x00, 0xCA, tag >> 8, tag & 0xFF, 0x00]
        hresult, response = scard.SCardTransmit(self._card, self._pci, apdu)
        if hresult != scard.SCARD_S_SUCCESS:
            message, hint = _pcsc_sentence(scard, hresult, self.reader)
            raise CardError(message, hint=hint)
        try:
            if len(response) < 2:
                raise CardError(f"the card in reader {self.reader!r} gave a malformed answer")
            sw = response[-2] << 8 | response[-1]
            if sw == SW_SECURITY_STATUS:
                raise CardError("the card will not give its data object before its PIN is "
                                "verified", requirement="CER-SHARE-CARD")
            if sw in (SW_DO_NOT_FOUND, SW_WRONG_P1P2):
                raise CardError(f"the card has no data object {tag:04X}",
                                requirement="CER-SHARE-CARD")
            self._check(sw, f"to read data object {tag:04X}")
            return bytearray(response[:-2])
        finally:
            _wipe(response)


def _card_capabilities(historical: bytes) -> int:
    """The third card-capabilities byte (compact-TLV 73 in the historical bytes): bit 8
    command chaining, bit 7 extended Lc and Le (ISO 7816-4 8.1.1.2.7)."""
    if not historical or historical[0] != 0x00:
        return 0
    i = 1
    end = len(historical) - 3  # status indicator 05 9000 closes category 00
    while i < end:
        tag, length = historical[i] >> 4, historical[i] & 0x0F
        if tag == 0x7 and length >= 3:
            return historical[i + 3]
        i += 1 + length
    return 0


def _public_from_template(template: bytes) -> bytes:
    objects = parse_tlv(template)
    inner = parse_tlv(objects.get(0x7F49, b""))
    public = inner.get(0x86, b"")
    if len(public) == 33 and public[0] == 0x40:  # some cards prefix the native point
        public = public[1:]
    if len(public) != 32:
        raise CardError("the card's signature key is not an Ed25519 key")
    try:
        Ed25519PublicKey.from_public_bytes(public)
    except ValueError:
        raise CardError("the card returned an invalid Ed25519 public key") from None
    return public


def _blocked(what: str) -> CardError:
    if what == ADMIN_PIN:
        return CardError("the card's admin PIN is blocked after too many wrong tries",
                         hint="only a reset of the card's OpenPGP application clears it, "
                              "and that deletes its keys")
    return CardError("the card's PIN is blocked after too many wrong tries",
                     hint="the card's administrator can unblock it with the admin PIN "
                          "(gpg --card-edit, admin, passwd, unblock PIN); until then the card "
                          "cannot sign")


class CardSigner:
    """A custodian's card as the engine's approval signer (the interface of
    ``KeyFileSigner``): ``participant``, ``public_key`` and ``sign(message)``.

    Each signature is its own session: the card in the reader must hold the expected key
    (checked before any PIN is spent), then ``pin_source`` gives the PIN for this one
    signature; it is wiped as soon as the card has it.
    """

    def __init__(self, participant: str, pin_source: Callable[[], bytearray], *,
                 reader: str | None = None, public_key: bytes | None = None) -> None:
        self.participant = participant
        self.reader = reader
        self._pin_source = pin_source
        if public_key is None:
            with self._session() as card:
                public_key = card.identity().public_key
        self._public = public_key

    @property
    def public_key(self) -> str:
        return encode_key(self._public)

    @contextmanager
    def _session(self) -> Iterator[OpenPgpCard]:
        with OpenPgpCard(self.reader) as card:
            yield card

    def sign(self, message: bytes) -> bytes:
        with self._session() as card:
            found = card.public_key()
            if found != self._public:
                raise CardError(f"the card in the reader is not {self.participant}'s card",
                                hint=f"{self.participant}'s key is {encode_key(self._public)};"
                                     f" the card holds {encode_key(found)}")
            card.verify(self._pin_source())
            signature = card.sign(message)
        try:
            Ed25519PublicKey.from_public_bytes(self._public).verify(signature, message)
        except Exception:
            raise CardError(f"the signature from {self.participant}'s card does not verify",
                            hint="the card may be faulty; do not use it") from None
        return signature
