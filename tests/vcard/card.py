"""The OpenPGP card application, as far as custodian identities need it, in software.

Follows "Functional Specification of the OpenPGP application on ISO Smart Card Operating
Systems", version 3.4 (the section numbers below are that document's):

- SELECT by AID (7.2.1), partial (6 bytes) or full (16 bytes) AID.
- GET DATA (7.2.6): 004F AID, 005E login, 0065 cardholder data, 006E application related
  data (4F, 5F52, 7F66, 73 with C0 extended capabilities, C1-C3 algorithm attributes, C4 PW
  status bytes, C5 fingerprints, C6 CA fingerprints, CD generation dates, DE key
  information), 007A security support template (93 signature counter), 00C4, 5F52, 7F66,
  00DE, 00F9 KDF-DO.
- PUT DATA (7.2.8, PW3): C1-C3 algorithm attributes (changing them deletes that key),
  C4 (its first byte), C7-C9 fingerprints, CE-D0 generation dates, 5B name, 5E login, F9.
- Private use DOs 0101-0104 (4.4.1, 7.2.6, 7.2.8), announced by bit 0x08 of the extended
  capabilities with their size in its bytes 7-8 (the maximum length of special DOs):
  GET DATA 0101 and 0102 always, 0103 after VERIFY PW1 82, 0104 after VERIFY PW3; PUT
  DATA 0101 and 0103 after VERIFY PW1 82, 0102 and 0104 after VERIFY PW3 (6982 otherwise,
  6700 when longer than the size). Empty until written; an empty PUT DATA empties one.
  ``CardState.factory(private_dos=False)`` makes a card without them (6A88, no 0x08 bit).
- VERIFY (7.2.2): PW1 for signing (81) and for other commands (82), PW3 (83); P1 FF resets
  the status; no data reports it (9000 verified, 63CX not verified with X tries left).
  A wrong password counts down its retry counter (6982) and blocks at 0 (6983); the counter
  goes down in the state file before the comparison, as a card writes it before it answers.
- GENERATE ASYMMETRIC KEY PAIR (7.2.14): P1 80 generates (PW3), P1 81 reads the public key;
  CRT B6 (signature key) with Ed25519 attributes; answer 7F49 { 86 public key }. Generation
  resets the signature counter and clears that key's fingerprint and date, which the host
  computes and writes with PUT DATA, as GnuPG does.
- PSO: COMPUTE DIGITAL SIGNATURE (7.2.10): EdDSA over the command data as it is (the card
  does no hashing for EdDSA), after VERIFY 81; the signature counter counts up; PW1 stays
  valid for one signature only while the first PW status byte is 00.
- ISO 7816-4 framing: short and extended APDUs (cases 1-4), command chaining (CLA bit 0x10),
  response chaining with 61XX and GET RESPONSE.

Status words: 6700 wrong length, 6982 security status not satisfied (wrong password or none
verified), 6983 blocked, 6985 conditions of use not satisfied, 6A80 incorrect data, 6A82
application not found, 6A88 data object or key not found, 6B00 wrong P1-P2, 6D00
instruction not supported, 6E00 class not supported, 6883 last command of the chain
expected, 6884 command chaining not supported.

Not implemented (a test card needs none of it): the decryption and authentication keys
(attributes only), key import, RSA and ECDSA keys (their attributes can be set, but such a
key cannot be generated: 6985), PSO:DECIPHER, INTERNAL AUTHENTICATE, CHANGE REFERENCE DATA,
RESET RETRY COUNTER, the resetting code, GET CHALLENGE, certificates (7F21), URL, UIF and
touch, TERMINATE DF / ACTIVATE FILE, secure messaging, MSE.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

RID_APP = bytes.fromhex("D27600012401")  # RID D276000124, application 01 (OpenPGP)
VERSION = bytes([3, 4])
MANUFACTURER_TEST = bytes.fromhex("FFFF")  # 0xFFFF: test card (spec 4.2.1)
ED25519_ATTRIBUTES = bytes.fromhex("16" "2B06010401DA470F01")  # EdDSA, OID 1.3.6.1.4.1.11591.15.1
RSA2048_ATTRIBUTES = bytes.fromhex("01" "0800" "0020" "00")
MAX_PIN = 127
PW1_MIN, PW3_MIN = 6, 8
MAX_COMMAND = MAX_RESPONSE = 0x0800
MAX_SPECIAL_DO = 0xFF
PRIVATE_DOS = (0x0101, 0x0102, 0x0103, 0x0104)
PIN_TRIES = 3
KEY_SLOTS = ("sig", "dec", "aut")
CRT = {0xB6: "sig", 0xB8: "dec", 0xA4: "aut"}

SW_OK = b"\x90\x00"
SW_WRONG_LENGTH = b"\x67\x00"
SW_LAST_OF_CHAIN_EXPECTED = b"\x68\x83"
SW_CHAINING_UNSUPPORTED = b"\x68\x84"
SW_SECURITY_STATUS = b"\x69\x82"
SW_BLOCKED = b"\x69\x83"
SW_CONDITIONS = b"\x69\x85"
SW_INCORRECT_DATA = b"\x6a\x80"
SW_NOT_FOUND = b"\x6a\x82"
SW_DO_NOT_FOUND = b"\x6a\x88"
SW_WRONG_P1P2 = b"\x6b\x00"
SW_INS_UNSUPPORTED = b"\x6d\x00"
SW_CLA_UNSUPPORTED = b"\x6e\x00"


KDF_COUNT = 0x00020000  # bytes the KDF hashes: small, so that tests stay fast


def s2k(pin: bytes, salt: bytes, count: int = KDF_COUNT) -> bytes:
    """OpenPGP iterated and salted S2K with SHA-256 (RFC 4880 3.7.1.3): the hash of
    salt || PIN repeated and cut to ``count`` bytes (at least one whole salt || PIN)."""
    unit = salt + pin
    stream = unit * (max(count, len(unit)) // len(unit) + 1)
    return hashlib.sha256(stream[:max(count, len(unit))]).digest()


class CardStatus(Exception):
    """Ends a command with a status word and no data."""

    def __init__(self, sw: bytes) -> None:
        super().__init__(sw.hex())
        self.sw = sw


def tlv(tag: int, value: bytes) -> bytes:
    """BER-TLV with a one- or two-byte tag and a definite length."""
    head = tag.to_bytes(2 if tag > 0xFF else 1, "big")
    n = len(value)
    if n < 0x80:
        length = bytes([n])
    elif n <= 0xFF:
        length = bytes([0x81, n])
    else:
        length = bytes([0x82]) + n.to_bytes(2, "big")
    return head + length + value


@dataclass
class KeySlot:
    attributes: str  # hex algorithm attributes (C1-C3)
    fingerprint: str = "00" * 20
    generated: int = 0  # generation date, seconds since 1970 (CE-D0)
    status: int = 0  # key information DE: 00 none, 01 generated on the card, 02 imported
    private: str = ""  # hex Ed25519 seed; "" when there is no key


@dataclass
class CardState:
    """Everything a card keeps across power cycles, stored as JSON in ``path``."""

    serial: str
    pw1: str  # hex of the stored PW1 (the PIN itself, or its KDF hash when F9 is on)
    pw3: str
    pw1_tries: int = PIN_TRIES
    pw3_tries: int = PIN_TRIES
    rc_tries: int = 0  # no resetting code set
    pw1_once: int = 0  # PW status byte 1: 00 PW1 valid for one signature, 01 for several
    keys: dict[str, KeySlot] = field(default_factory=dict)
    ca_fingerprints: str = "00" * 60
    signature_counter: int = 0
    name: str = ""
    login: str = ""
    kdf: str = ""  # hex of the KDF-DO (F9); "" when the card has none
    chaining: bool = True
    extended: bool = True
    private_dos: dict[str, str] = field(default_factory=dict)  # "0101" -> hex content
    has_private_dos: bool = True
    max_special_do: int = MAX_SPECIAL_DO  # the size of each private DO, login, F9

    @classmethod
    def factory(cls, *, serial: str | None = None, pin: bytes = b"123456",
                admin_pin: bytes = b"12345678", algorithm: str = "rsa2048",
                chaining: bool = True, extended: bool = True, kdf: bool = False,
                private_dos: bool = True, max_special_do: int = MAX_SPECIAL_DO) -> CardState:
        """A card as it comes from the factory: default PINs, no keys, RSA-2048 attributes
        (as YubiKeys and Nitrokeys ship) unless ``algorithm`` is "ed25519". With ``kdf`` the
        KDF-DO is on (as `gpg --card-edit` kdf-setup leaves it): the card stores and
        compares the iterated-salted SHA-256 of each PIN, which the host must send.
        ``private_dos`` False: a card without the private use DOs 0101-0104;
        ``max_special_do`` their size (and the login DO's, F9's)."""
        attributes = (ED25519_ATTRIBUTES if algorithm == "ed25519" else RSA2048_ATTRIBUTES).hex()
        kdf_do = b""
        if kdf:
            salts = [secrets.token_bytes(8) for _ in range(3)]
            kdf_do = b"".join([tlv(0x81, b"\x03"), tlv(0x82, b"\x08"),
                               tlv(0x83, KDF_COUNT.to_bytes(4, "big")), tlv(0x84, salts[0]),
                               tlv(0x85, salts[1]), tlv(0x86, salts[2]),
                               tlv(0x87, s2k(pin, salts[0])), tlv(0x88, s2k(admin_pin, salts[2]))])
            pin, admin_pin = s2k(pin, salts[0]), s2k(admin_pin, salts[2])
        return cls(serial=serial or secrets.token_hex(4), pw1=pin.hex(), pw3=admin_pin.hex(),
                   keys={slot: KeySlot(attributes) for slot in KEY_SLOTS},
                   chaining=chaining, extended=extended, kdf=kdf_do.hex(),
                   has_private_dos=private_dos, max_special_do=max_special_do)

    @classmethod
    def load(cls, path: Path) -> CardState:
        data: dict[str, Any] = json.loads(path.read_text())
        data["keys"] = {k: KeySlot(**v) for k, v in data["keys"].items()}
        return cls(**data)

    def save(self, path: Path) -> None:
        """Write atomically, so a card killed mid-write keeps its previous state."""
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(self), handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)


@dataclass
class Apdu:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: int | None  # None: no Le field; 256 or 65536 for a zero Le
    extended: bool


def parse_apdu(raw: bytes) -> Apdu:
    """ISO 7816-4 cases 1, 2S/E, 3S/E, 4S/E; anything else is a wrong length."""
    if len(raw) < 4:
        raise CardStatus(SW_WRONG_LENGTH)
    cla, ins, p1, p2 = raw[:4]
    body = raw[4:]
    if not body:
        return Apdu(cla, ins, p1, p2, b"", None, False)
    if len(body) == 1:
        return Apdu(cla, ins, p1, p2, b"", body[0] or 256, False)
    if body[0] != 0:
        lc = body[0]
        if len(body) == 1 + lc:
            return Apdu(cla, ins, p1, p2, body[1:], None, False)
        if len(body) == 2 + lc:
            return Apdu(cla, ins, p1, p2, body[1:1 + lc], body[-1] or 256, False)
        raise CardStatus(SW_WRONG_LENGTH)
    if len(body) == 3:
        return Apdu(cla, ins, p1, p2, b"", int.from_bytes(body[1:3], "big") or 65536, True)
    lc = int.from_bytes(body[1:3], "big")
    if lc == 0:
        raise CardStatus(SW_WRONG_LENGTH)
    if len(body) == 3 + lc:
        return Apdu(cla, ins, p1, p2, body[3:], None, True)
    if len(body) == 5 + lc:
        return Apdu(cla, ins, p1, p2, body[3:3 + lc],
                    int.from_bytes(body[-2:], "big") or 65536, True)
    raise CardStatus(SW_WRONG_LENGTH)


class OpenPgpCard:
    """One card: persistent state in a file, volatile state (selection, verified
    passwords, chains) lost at every power off or reset, as on a real card."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state = CardState.load(path)
        self.power_cycle()

    # ------------------------------------------------------------------ power

    def power_cycle(self) -> None:
        self.selected = False
        self.pw1_81 = self.pw1_82 = self.pw3 = False
        self.chain: tuple[tuple[int, int, int], bytes] | None = None
        self.pending = b""

    def atr(self) -> bytes:
        """TS 3B, T0 (TD1 and the historical bytes follow), TD1 T=1, historical bytes, TCK."""
        historical = self.historical_bytes()
        body = bytes([0x80 | len(historical), 0x01]) + historical
        tck = 0
        for b in body:
            tck ^= b
        return b"\x3b" + body + bytes([tck])

    def historical_bytes(self) -> bytes:
        """Category 00, card service data (31 C5), card capabilities (73 ...), status 05 9000."""
        third = (0x80 if self.state.chaining else 0) | (0x40 if self.state.extended else 0)
        return bytes([0x00, 0x31, 0xC5, 0x73, 0xC0, 0x01, third, 0x05, 0x90, 0x00])

    # --------------------------------------------------------------- dispatch

    def process(self, raw: bytes) -> bytes:
        """One command APDU in, one response APDU (data and status word) out."""
        try:
            apdu = parse_apdu(raw)
            if apdu.cla & ~0x10 != 0x00:
                raise CardStatus(SW_CLA_UNSUPPORTED)
            if apdu.ins == 0xC0 and self.pending:
                return self._respond(self.pending, apdu)
            self.pending = b""
            whole = self._unchain(apdu)
            if whole is None:
                return SW_OK
            apdu = whole
            if apdu.ins == 0xA4:
                return self._respond(self.select(apdu), apdu)
            if not self.selected:
                raise CardStatus(SW_CONDITIONS)
            handler = {0xCA: self.get_data, 0xDA: self.put_data, 0x20: self.verify,
                       0x47: self.generate, 0x2A: self.pso}.get(apdu.ins)
            if handler is None:
                raise CardStatus(SW_INS_UNSUPPORTED)
            return self._respond(handler(apdu), apdu)
        except CardStatus as status:
            return status.sw

    def _unchain(self, apdu: Apdu) -> Apdu | None:
        """Collect a command chain (CLA bit 0x10); None while links are still coming."""
        header = (apdu.ins, apdu.p1, apdu.p2)
        if apdu.cla & 0x10:
            if not self.state.chaining:
                raise CardStatus(SW_CHAINING_UNSUPPORTED)
            if self.chain is not None and self.chain[0] != header:
                self.chain = None
                raise CardStatus(SW_LAST_OF_CHAIN_EXPECTED)
            before = self.chain[1] if self.chain else b""
            self.chain = (header, before + apdu.data)
            if len(self.chain[1]) > MAX_COMMAND:
                self.chain = None
                raise CardStatus(SW_WRONG_LENGTH)
            return None
        if self.chain is None:
            return apdu
        chained_header, data = self.chain
        self.chain = None
        if chained_header != header:
            raise CardStatus(SW_LAST_OF_CHAIN_EXPECTED)
        return Apdu(apdu.cla, apdu.ins, apdu.p1, apdu.p2, data + apdu.data, apdu.le,
                    apdu.extended)

    def _respond(self, data: bytes, apdu: Apdu) -> bytes:
        """Data up to Le, then 61XX and the rest kept for GET RESPONSE (ISO 7816-4 5.3.4)."""
        limit = apdu.le if apdu.le is not None else (65536 if apdu.extended else 256)
        if len(data) <= limit:
            self.pending = b""
            return data + SW_OK
        self.pending = data[limit:]
        return data[:limit] + bytes([0x61, min(len(self.pending), 256) & 0xFF])

    def _save(self) -> None:
        self.state.save(self.path)

    # --------------------------------------------------------------- commands

    def select(self, apdu: Apdu) -> bytes:
        if apdu.p1 != 0x04 or apdu.p2 not in (0x00, 0x0C):
            raise CardStatus(SW_WRONG_P1P2)
        if apdu.data not in (RID_APP, self.aid()):
            self.selected = False
            raise CardStatus(SW_NOT_FOUND)
        self.selected = True
        self.pw1_81 = self.pw1_82 = self.pw3 = False
        return b""

    def aid(self) -> bytes:
        return RID_APP + VERSION + MANUFACTURER_TEST + bytes.fromhex(self.state.serial) + \
            b"\x00\x00"

    def pw_status(self) -> bytes:
        s = self.state
        return bytes([s.pw1_once, MAX_PIN, MAX_PIN, MAX_PIN, s.pw1_tries, s.rc_tries,
                      s.pw3_tries])

    def extended_capabilities(self) -> bytes:
        # PW status changeable (0x10), private use DOs (0x08), algorithm attributes
        # changeable (0x04), KDF-DO (0x01); bytes 7-8: the maximum length of special DOs
        first = 0x15 | (0x08 if self.state.has_private_dos else 0)
        return bytes([first, 0x00, 0x00, 0x00, 0x00, 0x00]) + \
            self.state.max_special_do.to_bytes(2, "big") + b"\x00\x00"

    def extended_length_info(self) -> bytes:
        return tlv(0x02, MAX_COMMAND.to_bytes(2, "big")) + \
            tlv(0x02, MAX_RESPONSE.to_bytes(2, "big"))

    def key_information(self) -> bytes:
        return b"".join(bytes([i + 1, self.state.keys[slot].status])
                        for i, slot in enumerate(KEY_SLOTS))

    def application_related_data(self) -> bytes:
        keys = self.state.keys
        discretionary = b"".join([
            tlv(0xC0, self.extended_capabilities()),
            *(tlv(0xC1 + i, bytes.fromhex(keys[slot].attributes))
              for i, slot in enumerate(KEY_SLOTS)),
            tlv(0xC4, self.pw_status()),
            tlv(0xC5, b"".join(bytes.fromhex(keys[slot].fingerprint) for slot in KEY_SLOTS)),
            tlv(0xC6, bytes.fromhex(self.state.ca_fingerprints)),
            tlv(0xCD, b"".join(keys[slot].generated.to_bytes(4, "big") for slot in KEY_SLOTS)),
            tlv(0xDE, self.key_information()),
        ])
        parts = [tlv(0x4F, self.aid()), tlv(0x5F52, self.historical_bytes())]
        if self.state.extended:
            parts.append(tlv(0x7F66, self.extended_length_info()))
        parts.append(tlv(0x73, discretionary))
        return b"".join(parts)

    def get_data(self, apdu: Apdu) -> bytes:
        if apdu.data:
            raise CardStatus(SW_WRONG_LENGTH)
        tag = apdu.p1 << 8 | apdu.p2
        s = self.state
        if tag == 0x004F:
            return self.aid()
        if tag == 0x005E:
            return s.login.encode()
        if tag == 0x0065:
            return tlv(0x5B, s.name.encode()) + tlv(0x5F2D, b"") + tlv(0x5F35, b"9")
        if tag == 0x006E:
            return self.application_related_data()
        if tag == 0x007A:
            return tlv(0x93, s.signature_counter.to_bytes(3, "big"))
        if tag == 0x00C4:
            return self.pw_status()
        if tag == 0x5F52:
            return self.historical_bytes()
        if tag == 0x7F66 and s.extended:
            return self.extended_length_info()
        if tag == 0x00DE:
            return self.key_information()
        if tag == 0x00F9 and s.kdf:
            return bytes.fromhex(s.kdf)
        if tag in PRIVATE_DOS and s.has_private_dos:
            if (tag == 0x0103 and not self.pw1_82) or (tag == 0x0104 and not self.pw3):
                raise CardStatus(SW_SECURITY_STATUS)
            return bytes.fromhex(s.private_dos.get(f"{tag:04X}", ""))
        raise CardStatus(SW_DO_NOT_FOUND)

    def put_data(self, apdu: Apdu) -> bytes:
        if apdu.p1 == 0x3F and apdu.p2 == 0xFF:  # odd-INS key import is not supported
            raise CardStatus(SW_WRONG_P1P2)
        tag = apdu.p1 << 8 | apdu.p2
        if tag in PRIVATE_DOS and self.state.has_private_dos:
            return self._put_private(tag, apdu.data)
        known = {0x00C1, 0x00C2, 0x00C3, 0x00C4, 0x00C7, 0x00C8, 0x00C9, 0x00CE, 0x00CF,
                 0x00D0, 0x005B, 0x005E, 0x00F9}
        if tag not in known:
            raise CardStatus(SW_DO_NOT_FOUND)
        if not self.pw3:
            raise CardStatus(SW_SECURITY_STATUS)
        data, s = apdu.data, self.state
        if tag in (0x00C1, 0x00C2, 0x00C3):
            if not _valid_attributes(data):
                raise CardStatus(SW_INCORRECT_DATA)
            slot = s.keys[KEY_SLOTS[tag - 0xC1]]
            if bytes.fromhex(slot.attributes) != data:
                # New attributes make the old key meaningless: it is deleted.
                s.keys[KEY_SLOTS[tag - 0xC1]] = KeySlot(data.hex())
        elif tag == 0x00C4:
            if len(data) not in (1, 4) or data[0] not in (0, 1):
                raise CardStatus(SW_WRONG_LENGTH if len(data) not in (1, 4) else
                                 SW_INCORRECT_DATA)
            s.pw1_once = data[0]
        elif tag in (0x00C7, 0x00C8, 0x00C9):
            if len(data) != 20:
                raise CardStatus(SW_WRONG_LENGTH)
            s.keys[KEY_SLOTS[tag - 0xC7]].fingerprint = data.hex()
        elif tag in (0x00CE, 0x00CF, 0x00D0):
            if len(data) != 4:
                raise CardStatus(SW_WRONG_LENGTH)
            s.keys[KEY_SLOTS[tag - 0xCE]].generated = int.from_bytes(data, "big")
        elif tag == 0x005B:
            if len(data) > 39:
                raise CardStatus(SW_WRONG_LENGTH)
            s.name = data.decode("latin-1")
        elif tag == 0x005E:
            if len(data) > MAX_SPECIAL_DO:
                raise CardStatus(SW_WRONG_LENGTH)
            s.login = data.decode("latin-1")
        else:  # F9; the host must then set both passwords again, in their KDF form
            if len(data) > MAX_SPECIAL_DO:
                raise CardStatus(SW_WRONG_LENGTH)
            s.kdf = data.hex()
        self._save()
        return b""

    def _put_private(self, tag: int, data: bytes) -> bytes:
        """PUT DATA 0101-0104: PW1 (82) for 0101 and 0103, PW3 for 0102 and 0104."""
        if not (self.pw1_82 if tag in (0x0101, 0x0103) else self.pw3):
            raise CardStatus(SW_SECURITY_STATUS)
        if len(data) > self.state.max_special_do:
            raise CardStatus(SW_WRONG_LENGTH)
        self.state.private_dos[f"{tag:04X}"] = data.hex()
        self._save()
        return b""

    def verify(self, apdu: Apdu) -> bytes:
        if apdu.p1 not in (0x00, 0xFF) or apdu.p2 not in (0x81, 0x82, 0x83):
            raise CardStatus(SW_WRONG_P1P2)
        admin = apdu.p2 == 0x83
        if apdu.p1 == 0xFF:
            if apdu.data:
                raise CardStatus(SW_WRONG_LENGTH)
            self._set_verified(apdu.p2, False)
            return b""
        tries = self.state.pw3_tries if admin else self.state.pw1_tries
        if not apdu.data:
            if tries == 0:
                raise CardStatus(SW_BLOCKED)
            if self._verified(apdu.p2):
                return b""
            raise CardStatus(bytes([0x63, 0xC0 | tries]))
        if len(apdu.data) > MAX_PIN:
            raise CardStatus(SW_WRONG_LENGTH)
        if tries == 0:
            raise CardStatus(SW_BLOCKED)
        self._set_verified(apdu.p2, False)
        self._set_tries(admin, tries - 1)  # counted before comparing, as a card must
        stored = bytes.fromhex(self.state.pw3 if admin else self.state.pw1)
        if not hmac.compare_digest(stored, apdu.data):
            raise CardStatus(SW_BLOCKED if tries == 1 else SW_SECURITY_STATUS)
        self._set_tries(admin, PIN_TRIES)
        self._set_verified(apdu.p2, True)
        return b""

    def _verified(self, reference: int) -> bool:
        return {0x81: self.pw1_81, 0x82: self.pw1_82, 0x83: self.pw3}[reference]

    def _set_verified(self, reference: int, value: bool) -> None:
        if reference == 0x81:
            self.pw1_81 = value
        elif reference == 0x82:
            self.pw1_82 = value
        else:
            self.pw3 = value

    def _set_tries(self, admin: bool, tries: int) -> None:
        if admin:
            self.state.pw3_tries = tries
        else:
            self.state.pw1_tries = tries
        self._save()

    def generate(self, apdu: Apdu) -> bytes:
        if apdu.p1 not in (0x80, 0x81) or apdu.p2 != 0x00:
            raise CardStatus(SW_WRONG_P1P2)
        data = apdu.data
        if len(data) not in (2, 5):
            raise CardStatus(SW_WRONG_LENGTH)
        if data[0] not in CRT or data[1] != len(data) - 2 or \
                (len(data) == 5 and data[2:4] != b"\x84\x01"):
            raise CardStatus(SW_INCORRECT_DATA)
        slot_name = CRT[data[0]]
        slot = self.state.keys[slot_name]
        if apdu.p1 == 0x81:
            if not slot.private:
                raise CardStatus(SW_DO_NOT_FOUND)
            return self._public_key_template(slot)
        if not self.pw3:
            raise CardStatus(SW_SECURITY_STATUS)
        if slot_name != "sig" or not _is_ed25519(bytes.fromhex(slot.attributes)):
            raise CardStatus(SW_CONDITIONS)  # this card generates Ed25519 signature keys only
        seed = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption())
        self.state.keys[slot_name] = KeySlot(slot.attributes, status=1, private=seed.hex())
        self.state.signature_counter = 0
        self._save()
        return self._public_key_template(self.state.keys[slot_name])

    @staticmethod
    def _public_key_template(slot: KeySlot) -> bytes:
        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(slot.private))
        public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw)
        return tlv(0x7F49, tlv(0x86, public))

    def pso(self, apdu: Apdu) -> bytes:
        if (apdu.p1, apdu.p2) != (0x9E, 0x9A):
            raise CardStatus(SW_WRONG_P1P2)  # only COMPUTE DIGITAL SIGNATURE is here
        if not self.pw1_81:
            raise CardStatus(SW_SECURITY_STATUS)
        slot = self.state.keys["sig"]
        if not slot.private:
            raise CardStatus(SW_DO_NOT_FOUND)
        if not _is_ed25519(bytes.fromhex(slot.attributes)):
            raise CardStatus(SW_CONDITIONS)
        if not apdu.data:
            raise CardStatus(SW_WRONG_LENGTH)
        if self.state.signature_counter >= 0xFFFFFF:
            raise CardStatus(SW_CONDITIONS)
        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(slot.private))
        signature = key.sign(apdu.data)
        self.state.signature_counter += 1
        if self.state.pw1_once == 0:
            self.pw1_81 = False
        self._save()
        return signature


def _is_ed25519(attributes: bytes) -> bool:
    return attributes in (ED25519_ATTRIBUTES, ED25519_ATTRIBUTES + b"\xff")


def _valid_attributes(data: bytes) -> bool:
    """Ed25519 (optionally with the FF import-format byte), or RSA 2048/3072/4096 with a
    32-bit exponent field; the card accepts RSA attributes but cannot make such keys."""
    if _is_ed25519(data):
        return True
    return len(data) == 6 and data[0] == 0x01 and \
        int.from_bytes(data[1:3], "big") in (2048, 3072, 4096) and data[3:5] == b"\x00\x20" \
        and data[5] <= 3


def create_card(path: Path, **factory: Any) -> CardState:
    """Write a factory-fresh card to ``path`` (see ``CardState.factory``)."""
    state = CardState.factory(**factory)
    state.save(path)
    return state
