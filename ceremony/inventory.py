"""Token inventory and drift: what is on a token, compared with what ceremonies recorded.

Pure logic over plain records: the PKCS#11 adapter lists the token's objects as
:class:`FoundObject` (``Pkcs11Token.inventory``), bundles give :class:`ExpectedObject` from
their transcripts, and :func:`compare` names the drift. Nothing here imports a device
library, so it is tested without a token and reads the same for any PKCS#11 module.

Fingerprints are SHA-256 (hex) of the raw public key for EC and EdDSA keys (Ed25519: the
32 bytes; ECDSA: the uncompressed point 04||X||Y, i.e. CKA_EC_POINT without its DER
wrapping), which is how root_key.created records ``fingerprint``; for any other key type
(RSA) of the DER SubjectPublicKeyInfo. Drift kinds:

- ``unknown``: an object on the token that no given ceremony created;
- ``missing``: an object a ceremony created (and never destroyed) that is not on the token;
- ``differs``: an object a ceremony created whose label, id, key type, fingerprint,
  sensitive or extractable flag is not what the transcript recorded;
- ``leftover``: a ceremony's transcript key still on the token after that ceremony sealed
  (it is destroyed when the bundle is finished).

Only bundles that verify are used (CER-INVENTORY): an altered transcript could otherwise
hide an object or invent one.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ceremony.errors import CheckFailed

TRANSCRIPT_FILE = "transcript.jsonl"


@dataclass(frozen=True)
class FoundObject:
    """One object on the token, public attributes only (as the adapter lists it)."""

    label: str
    key_id: str  # hex CKA_ID
    object_class: str  # private_key | public_key | secret_key | certificate | data | other
    key_type: str = ""  # EC_EDWARDS, EC, RSA, AES ... ("" when not a key)
    sensitive: bool | None = None  # None: not applicable or not readable
    extractable: bool | None = None
    fingerprint: str = ""  # see the module docstring; "" when not computable

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "id": self.key_id, "class": self.object_class,
                "key_type": self.key_type, "sensitive": self.sensitive,
                "extractable": self.extractable, "fingerprint": self.fingerprint}


@dataclass(frozen=True)
class ExpectedObject:
    """An object a ceremony recorded creating, with what it recorded about it."""

    ceremony: str
    purpose: str  # "root key" | "transcript key"
    label: str
    key_id: str
    object_class: str
    key_type: str = ""
    sensitive: bool | None = None
    extractable: bool | None = None
    fingerprint: str = ""
    present: bool = True  # False: the ceremony destroyed it (the transcript key after sealing)


@dataclass(frozen=True)
class Finding:
    """One piece of drift, as one sentence."""

    kind: str  # unknown | missing | differs | leftover
    label: str
    key_id: str
    object_class: str
    ceremony: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "label": self.label, "id": self.key_id,
                "class": self.object_class, "ceremony": self.ceremony, "detail": self.detail}


@dataclass
class Inventory:
    """The token's objects, the bundles compared and the drift found."""

    token: dict[str, Any]
    objects: list[FoundObject]
    bundles: list[dict[str, str]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    status: dict[int, str] = field(default_factory=dict)  # object index -> ok|unknown|...

    @property
    def drift(self) -> bool:
        return bool(self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {"token": self.token,
                "objects": [{**o.as_dict(), "status": self.status.get(i, "")}
                            for i, o in enumerate(self.objects)],
                "bundles": self.bundles, "findings": [f.as_dict() for f in self.findings],
                "drift": self.drift}


# ---------------------------------------------------------------- what bundles recorded

def expected_from_entries(entries: Iterable[dict[str, Any]]) -> list[ExpectedObject]:
    """Fold a transcript's entries (as dicts) into the objects its ceremony left on a token.

    Reads ceremony.started (the transcript key), root_key.created or a recovery's
    root_key.recovered (kind, label, id, fingerprint, attributes), action.completed
    ``created`` (the objects' classes and key types), action.rolled_back and
    ceremony.aborted ``destroyed_objects``, and the seal.
    """
    from ceremony.canonical import sha256_hex
    from ceremony.engine.core import transcript_key_id, transcript_key_label

    ceremony, sealed = "", False
    transcript_fp = ""
    roots: dict[tuple[str, str], dict[str, Any]] = {}  # (label, id) -> root_key.created
    created: dict[tuple[str, str, str], dict[str, Any]] = {}  # (label, id, class) -> object
    for entry in entries:
        event, payload = entry.get("event"), entry.get("payload", {})
        ceremony = str(entry.get("ceremony", ceremony))
        if event == "ceremony.started":
            transcript_fp = _fingerprint_of(payload.get("transcript_key", ""), sha256_hex)
        elif event in ("root_key.created", "root_key.recovered"):
            roots[(payload["label"], payload["id"])] = payload
        elif event == "action.completed":
            for obj in payload.get("created", []):
                created[(obj["label"], obj["id"], obj["class"])] = obj
        elif event in ("action.rolled_back", "ceremony.aborted"):
            for obj in payload.get("destroyed_objects", []):
                created.pop((obj["label"], obj["id"], obj["class"]), None)
                if not any(k[:2] == (obj["label"], obj["id"]) for k in created):
                    roots.pop((obj["label"], obj["id"]), None)
        elif event == "seal":
            sealed = True
    out = []
    for (label, key_id, cls), obj in sorted(created.items()):
        root = roots.get((label, key_id), {})
        attributes = root.get("attributes", {}) if cls != "public_key" else {}
        out.append(ExpectedObject(
            ceremony, "root key" if root else "ceremony object", label, key_id, cls,
            obj.get("key_type", ""), attributes.get("sensitive"), attributes.get("extractable"),
            str(root.get("fingerprint", ""))))
    label, key_id = transcript_key_label(ceremony), transcript_key_id(ceremony)
    for cls in ("private_key", "public_key"):
        out.append(ExpectedObject(ceremony, "transcript key", label, key_id, cls,
                                  "EC_EDWARDS", fingerprint=transcript_fp,
                                  present=not sealed))
    return out


def _fingerprint_of(encoded: str, sha256_hex: Any) -> str:
    import base64
    import binascii

    _, _, b64 = encoded.partition(":")
    try:
        return str(sha256_hex(base64.b64decode(b64, validate=True))) if b64 else ""
    except (binascii.Error, ValueError):
        return ""


def load_bundle(bundle: Path) -> tuple[dict[str, str], list[ExpectedObject]]:
    """Verify ``bundle`` and return (its summary, the objects it expects on the token).

    A bundle that does not verify is refused (exit 1): its transcript cannot be trusted to
    say what is on the token [CER-INVENTORY].
    """
    import json

    from ceremony.verify.core import verify_bundle

    if not (bundle / TRANSCRIPT_FILE).is_file():
        raise CheckFailed(f"{bundle} is not a ceremony bundle (it has no {TRANSCRIPT_FILE})",
                          hint="give the directory a ceremony wrote", requirement="CER-INVENTORY")
    report = verify_bundle(bundle)
    if not report.ok:
        failure = report.first_failure
        why = f" ({failure.name}: {failure.detail})" if failure else ""
        raise CheckFailed(f"the bundle {bundle} does not verify{why}, so the inventory cannot "
                          "trust what it says was created",
                          hint=f"run `ceremony verify {bundle}` to see why; compare only "
                               "with bundles that verify", requirement="CER-INVENTORY")
    entries = [json.loads(line) for line in
               (bundle / TRANSCRIPT_FILE).read_text(encoding="utf-8").splitlines()]
    summary = {"bundle": str(bundle), "ceremony": report.ceremony_id or "",
               "outcome": report.outcome or ""}
    return summary, expected_from_entries(entries)


# ---------------------------------------------------------------- comparison

_COMPARED = (("key_type", "key type"), ("fingerprint", "public key fingerprint"),
             ("sensitive", "sensitive flag"), ("extractable", "extractable flag"))


def _pair_fingerprints(found: list[FoundObject]) -> list[FoundObject]:
    """Give a private key without a readable public part the fingerprint of its public key.

    Only when exactly one public key on the token has the same label, id and key type.
    """
    out = []
    for obj in found:
        if obj.object_class == "private_key" and not obj.fingerprint:
            publics = [p for p in found if p.object_class == "public_key"
                       and (p.label, p.key_id, p.key_type) == (obj.label, obj.key_id,
                                                               obj.key_type)]
            if len(publics) == 1 and publics[0].fingerprint:
                obj = FoundObject(obj.label, obj.key_id, obj.object_class, obj.key_type,
                                  obj.sensitive, obj.extractable, publics[0].fingerprint)
        out.append(obj)
    return out


def compare(found: list[FoundObject], expected: list[ExpectedObject]) -> tuple[
        list[Finding], dict[int, str]]:
    """The drift between the token and the bundles, and a status per found object.

    An expected object is matched first by (label, id, class); one not found that way is
    matched by (class, fingerprint), which reports a renamed key as ``differs`` rather than
    as one missing and one unknown object.
    """
    paired = _pair_fingerprints(found)
    findings: list[Finding] = []
    status: dict[int, str] = {}
    unmatched = set(range(len(found)))

    def take(predicate: Any) -> int | None:
        hit = next((i for i in sorted(unmatched) if predicate(paired[i])), None)
        if hit is not None:
            unmatched.discard(hit)
        return hit

    second_pass = []
    for exp in expected:
        hit = take(lambda o, e=exp: (o.label, o.key_id, o.object_class) == (
            e.label, e.key_id, e.object_class))
        if hit is None:
            second_pass.append(exp)
        else:
            _judge(exp, paired[hit], hit, findings, status)
    for exp in second_pass:
        hit = None
        if exp.fingerprint:
            hit = take(lambda o, e=exp: (o.object_class, o.fingerprint) == (
                e.object_class, e.fingerprint))
        if hit is not None:
            _judge(exp, paired[hit], hit, findings, status)
        elif exp.present:
            findings.append(Finding("missing", exp.label, exp.key_id, exp.object_class,
                                    exp.ceremony, f"the {exp.purpose}'s "
                                    f"{_class_words(exp.object_class)} that ceremony "
                                    f"{exp.ceremony} created is not on the token"))
    for i in sorted(unmatched):
        obj = found[i]
        status[i] = "unknown"
        findings.append(Finding("unknown", obj.label, obj.key_id, obj.object_class, "",
                                f"no given ceremony created this "
                                f"{_class_words(obj.object_class)}"))
    return findings, status


def _judge(exp: ExpectedObject, obj: FoundObject, index: int, findings: list[Finding],
           status: dict[int, str]) -> None:
    if not exp.present:
        status[index] = "leftover"
        findings.append(Finding("leftover", obj.label, obj.key_id, obj.object_class,
                                exp.ceremony, f"ceremony {exp.ceremony} sealed, but its "
                                f"{exp.purpose} ({_class_words(obj.object_class)}) is still "
                                "on the token; destroy it"))
        return
    diffs = []
    for attr, words in (("label", "label"), ("key_id", "id")):
        if getattr(obj, attr) != getattr(exp, attr):
            diffs.append(f"{words} is {getattr(obj, attr)!r}, recorded "
                         f"{getattr(exp, attr)!r}")
    for attr, words in _COMPARED:
        recorded, now = getattr(exp, attr), getattr(obj, attr)
        if recorded in (None, "") or (attr == "fingerprint" and now == ""):
            continue  # not recorded, or (a private key's fingerprint) not readable
        if now != recorded:
            diffs.append(f"{words} is {_show(now)}, recorded {_show(recorded)}")
    if diffs:
        status[index] = "differs"
        findings.append(Finding("differs", exp.label, exp.key_id, exp.object_class,
                                exp.ceremony, f"the {exp.purpose}'s "
                                f"{_class_words(exp.object_class)}: " + "; ".join(diffs)))
    else:
        status[index] = "ok"


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and len(value) == 64:
        return value[:16] + "..."
    return repr(value) if isinstance(value, str) else str(value)


def _class_words(cls: str) -> str:
    return cls.replace("_", " ") if cls else "object"


def build_inventory(token: dict[str, Any], found: list[FoundObject],
                    bundles: list[tuple[dict[str, str], list[ExpectedObject]]]) -> Inventory:
    """The inventory of ``found``, compared with ``bundles`` when any are given."""
    inventory = Inventory(token, found, [summary for summary, _ in bundles])
    if bundles:
        expected = [e for _, objects in bundles for e in objects]
        inventory.findings, inventory.status = compare(found, expected)
    return inventory


# ---------------------------------------------------------------- human output

_SHORT_CLASS = {"private_key": "private", "public_key": "public", "secret_key": "secret",
                "certificate": "cert"}


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def _flags(obj: FoundObject) -> str:
    if obj.sensitive is None and obj.extractable is None:
        return ""
    return ("S" if obj.sensitive else "-") + ("E" if obj.extractable else "-")


def render(inventory: Inventory) -> str:
    """The inventory as a table of at most 80 columns, then the drift, one line each."""
    t = inventory.token
    lines = [*textwrap.wrap(f"token {t.get('label', '')!r} serial {t.get('serial', '')} "
                            f"model {t.get('model', '')!r}: {len(inventory.objects)} "
                            "object(s)", 80, subsequent_indent="  "), ""]
    header = (f"{'CLASS':<7} {'TYPE':<10} {'LABEL':<20} {'ID':<8} {'FL':<2} "
              f"{'FINGERPRINT':<16} {'STATUS':<8}")
    lines.append(header.rstrip())
    for i, obj in enumerate(inventory.objects):
        row = (f"{_cut(_SHORT_CLASS.get(obj.object_class, obj.object_class), 7):<7} "
               f"{_cut(obj.key_type, 10):<10} {_cut(obj.label, 20):<20} "
               f"{_cut(obj.key_id, 8):<8} {_flags(obj):<2} {obj.fingerprint[:16]:<16} "
               f"{inventory.status.get(i, '')}")
        lines.append(row.rstrip())
    lines.append("")
    lines.append("FL: S sensitive, E extractable (- not); FINGERPRINT: SHA-256, first 16")
    if not inventory.bundles:
        lines.append("no bundle given: nothing compared (pass --bundle to check for drift)")
        return "\n".join(lines)
    names = ", ".join(b["ceremony"] for b in inventory.bundles)
    if not inventory.findings:
        lines.extend(textwrap.wrap(f"no drift: the token holds exactly what {names} "
                                   "recorded", 80, subsequent_indent="  "))
        return "\n".join(lines)
    lines.extend(textwrap.wrap(f"DRIFT: {len(inventory.findings)} finding(s) against {names}",
                               80, subsequent_indent="  "))
    for f in inventory.findings:
        text = f"{f.kind}: {f.label!r} id {f.key_id}: {f.detail}"
        lines.extend(textwrap.wrap(text, 80, initial_indent="  ", subsequent_indent="    "))
    return "\n".join(lines)
