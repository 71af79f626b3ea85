"""The compromise drill's pure parts: what depends on a key, and its replacement script.

`ceremony lineage compromise --drill` (cli/lineage.py) walks the response to a compromised
root key in rehearsal: a compromise event marked as a drill, what to revoke, every bundle,
certificate and lineage record that depends on the key (found in a directory), and the
skeleton of the replacement ceremony's script. This module finds and computes; the CLI
writes. It reads files only, never a token or a card (docs/print-and-lineage.md, ADR 14).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ceremony.bundlefacts import load_verified
from ceremony.errors import CeremonyError
from ceremony.lineage import LINEAGE, chain, events_path, parse
from ceremony.model.script import ID_PATTERN, Script
from ceremony.verify.core import SCRIPT_FILE, TRANSCRIPT_FILE

REQUIREMENT = "CER-LIFECYCLE"
LINEAGE_SUFFIX = ".lineage.json"


@dataclass(frozen=True)
class Dependent:
    """One thing that depends on the key, and what the response does with it."""

    kind: str  # "bundle", "certificate", "csr", "lineage record", "lifecycle events"
    path: Path
    ceremony: str
    relation: str  # how it depends on the key, in words
    action: str  # what to do with it in the response
    verified: bool  # whether it was checked (bundles verify; records parse)

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "path": str(self.path), "ceremony": self.ceremony,
                "relation": self.relation, "action": self.action, "verified": self.verified}


def _bundles_and_records(directory: Path) -> tuple[list[Path], list[Path]]:
    """Every bundle directory (not descending into one) and lineage record file under
    ``directory``, in path order."""
    bundles: list[Path] = []
    records: list[Path] = []
    for root, dirs, files in os.walk(directory):
        here = Path(root)
        if TRANSCRIPT_FILE in files and SCRIPT_FILE in files:
            bundles.append(here)
            dirs[:] = []  # its original/ copy is the original bundle, found on its own
            continue
        dirs.sort()
        records += [here / f for f in sorted(files) if f.endswith(LINEAGE_SUFFIX)]
    return sorted(bundles), sorted(records)


def _bundle_dependents(key: str, bundle: Path) -> list[Dependent]:
    try:
        facts = load_verified(bundle, "so it is listed unverified")
    except CeremonyError:
        try:
            named = key in (bundle / TRANSCRIPT_FILE).read_text("utf-8", "replace") or \
                key in (bundle / SCRIPT_FILE).read_text("utf-8", "replace")
        except OSError:
            named = False
        if not named:
            return []
        return [Dependent("bundle", bundle, "?", "names the key but does NOT verify",
                          "check it by hand (`ceremony verify`)", False)]
    out: list[Dependent] = []
    cid = facts.ceremony_id
    if facts.root is not None and facts.root.fingerprint == key:
        relation = "made the key (creation)" if facts.original is None else \
            f"rebuilt the key (recovery of ceremony {facts.original.ceremony_id})"
        action = "its token holds the key: take the token out of service and destroy the " \
                 "key with the crypto officers (a drill touches no token)"
        out.append(Dependent("bundle", bundle, cid, relation, action, True))
        for cert in facts.certificates:
            if cert.kind == "certificate":
                out.append(Dependent(
                    "certificate", bundle / cert.file, cid,
                    f"certifies the key: subject {cert.subject}, serial {cert.serial}, "
                    f"sha256 {cert.fingerprint}",
                    "revoke it, and remove it from every trust store that holds it", True))
            else:
                out.append(Dependent(
                    "csr", bundle / cert.file, cid,
                    f"a certificate request for the key: subject {cert.subject}, sha256 "
                    f"{cert.fingerprint}",
                    "withdraw it, and revoke any certificate issued from it", True))
    previous = facts.script.previous
    if previous is not None and previous.root_fingerprint == key:
        out.append(Dependent("bundle", bundle, cid,
                             f"replaces the key ({previous.reason}): a newer key",
                             "keep it: it is the replacement", True))
    return out


def _record_dependents(key: str, path: Path) -> list[Dependent]:
    try:
        document = parse(path.read_bytes(), str(path))
    except (CeremonyError, OSError):
        return []
    out: list[Dependent] = []
    for doc in chain(document):
        record = doc["record"]
        link = record["previous"]
        names = record["key"]["fingerprint"] == key or (
            isinstance(link, dict) and link["root_fingerprint"] == key)
        if names and record["type"] == LINEAGE:
            out.append(Dependent("lineage record", path, record["ceremony"]["id"],
                                 f"the key's lineage ({record['ceremony']['kind']})",
                                 "record the compromise in it (`ceremony lineage event "
                                 "RECORD compromise`)", True))
            break
    events = events_path(path)
    if out and events.exists():
        out.append(Dependent("lifecycle events", events, out[0].ceremony,
                             "the key's signed lifecycle events",
                             "the real compromise event is appended here (`ceremony "
                             "lineage event`), never a drill's", True))
    return out


def dependents(key: str, directory: Path) -> list[Dependent]:
    """Everything under ``directory`` that depends on the root key ``key`` (fingerprint):
    the bundles that made, rebuilt or replaced it, the certificates and CSRs they made for
    it, and the lineage records (and their events) whose chain names it. A bundle that
    does not verify but names the key is listed too, marked unverified."""
    bundles, records = _bundles_and_records(directory)
    out: list[Dependent] = []
    for bundle in bundles:
        out += _bundle_dependents(key, bundle)
    for record in records:
        out += _record_dependents(key, record)
    return out


def new_ceremony_id(old: str) -> str:
    """The replacement ceremony's id: ``OLD-replacement``, or the next number after it."""
    found = re.fullmatch(r"(.*)-replacement(?:-(\d+))?", old)
    if found:
        base, number = found.group(1), int(found.group(2) or 1) + 1
        suffix = f"-replacement-{number}"
    else:
        base, suffix = old, "-replacement"
    new = base[: 64 - len(suffix)].rstrip("-._") + suffix
    assert re.fullmatch(ID_PATTERN, new), new
    return new


def replacement_script(text: str, script: Script, key: str, *, drill: bool,
                       reported: str) -> str:
    """The replacement ceremony's script: ``text`` (the script of the ceremony that made
    the key) with a new ceremony id, the version after it, and a ``[previous]`` table naming
    the compromised key. Everything else is the old ceremony's, to review before the day."""
    new_id = new_ceremony_id(script.ceremony_id)
    out, n = re.subn(r'(?m)^ceremony_id\s*=\s*"[^"\n]*"[ \t]*$', f'ceremony_id = "{new_id}"',
                     text, count=1)
    out, m = re.subn(r"(?m)^version\s*=\s*\d+[ \t]*$", f"version = {script.version + 1}",
                     out, count=1)
    table = re.search(r"(?m)^\[", out)
    if n != 1 or m != 1 or table is None:
        raise CeremonyError(f"the script of ceremony {script.ceremony_id} does not have "
                            "ceremony_id and version at its top, so no replacement script "
                            "is written", hint="write the replacement script by hand",
                            requirement=REQUIREMENT)
    mark = "DRILL: " if drill else ""
    header = (f"# {mark}the replacement of root key {key}\n"
              f"# (ceremony {script.ceremony_id}), reported compromised at {reported}.\n"
              "# A skeleton: review every participant, the token and the steps, have the "
              "script\n# signed (`ceremony script sign`), and run it as a new ceremony.\n")
    previous = ("[previous]\n"
                "# The compromised key this ceremony's new key replaces.\n"
                f'ceremony = "{script.ceremony_id}"\n'
                f'root_fingerprint = "{key}"\n'
                'reason = "compromise"\n\n')
    return header + out[: table.start()] + previous + out[table.start():]
