"""The answers file that drives a headless run: who approves each step, what is typed.

Participants who sign with their OpenPGP card are listed under ``[cards]``: the reader
and a file holding the card's PIN (else it is typed at the terminal, without echo); the PIN
itself is never in the answers file. Participants whose identity key is on their own PKCS#11
token are listed under ``[tokens]``: the token's URI, the key's label (and id), the module and
the PIN file, the same way.

The same ``[cards]`` entry is where a custodian's share goes when the script's
``[shares.delivery]`` sends it to their card (docs/card-shares.md). For a recovery it also
lists, under ``[[shares]]``, which custodian presents which share file (or, with
``card = true``, the share on their card), in the order they are presented (the files
hold the secret words; the answers file only names them). ``dice_file`` and
``passphrase_file`` name the files that hold the custodian dice rolls and the SLIP-39
passphrase when the script asks for them: secrets like a share sheet, named here, never
written here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ceremony.errors import AnswersError
from ceremony.model.script import ID_PATTERN, PARTICIPANT_PATTERN, STEP_PATTERN, Script, article
from ceremony.model.statements import DECLARED_KINDS
from ceremony.model.strict import Fields, Source, read_source


@dataclass(frozen=True)
class DeviationAnswer:
    """A deviation ``by`` declares once the step has begun (ADR 15)."""

    kind: str
    reason: str
    by: str


@dataclass(frozen=True)
class StepAnswers:
    step: str
    approvals: tuple[str, ...]
    witnesses: tuple[str, ...]
    confirm: str | None
    abort: str | None
    deviations: tuple[DeviationAnswer, ...] = ()


@dataclass(frozen=True)
class ShareAnswer:
    """A recovery: ``participant`` presents the share in ``file`` (a share sheet or words),
    or with ``card`` the share on their OpenPGP card (read with their [cards] entry)."""

    participant: str
    file: Path | None
    card: bool = False


@dataclass(frozen=True)
class CardAnswer:
    """``participant`` approves with their card: in ``reader`` (None: the one reader with a
    card), the PIN from ``pin_file`` (None: typed at the terminal), waiting at most
    ``wait_seconds`` for the card to be inserted."""

    participant: str
    reader: str | None
    pin_file: Path | None
    wait_seconds: int


@dataclass(frozen=True)
class TokenAnswer:
    """``participant`` approves with the Ed25519 key labelled ``key_label`` (and ``key_id``,
    hex, when given) on the PKCS#11 token ``uri`` names, through ``module`` (None: the
    default module), the PIN from ``pin_file`` (None: typed at the terminal)."""

    participant: str
    uri: str
    key_label: str
    key_id: str | None
    pin_file: Path | None
    module: str | None


@dataclass(frozen=True)
class Answers:
    ceremony_id: str
    identities: dict[str, Path]  # participant -> identity key file (rehearsal only)
    steps: dict[str, StepAnswers]
    source_name: str
    shares: tuple[ShareAnswer, ...] = ()  # a recovery's shares, in the order presented
    cards: dict[str, CardAnswer] = dataclasses.field(default_factory=dict)  # who signs by card
    dice_file: Path | None = None  # the custodian dice rolls ([entropy] in the script)
    passphrase_file: Path | None = None  # the SLIP-39 passphrase ([shares] passphrase)
    # [deviations] approvals: the custodians who approve each deviation (a retry, or one
    # declared under a step), in order; [seal] witnesses: who co-signs the seal (ADR 15).
    deviation_approvals: tuple[str, ...] = ()
    seal_witnesses: tuple[str, ...] = ()
    # who signs with an identity key on their own PKCS#11 token (allowed in real runs)
    tokens: dict[str, TokenAnswer] = dataclasses.field(default_factory=dict)


def parse_answers(text: str, name: str, script: Script, base: Path) -> Answers:
    """Strictly parse an answers file and check it against ``script``."""
    source = Source(name, text, AnswersError)
    top = source.load()
    ceremony_id = top.text("ceremony_id", pattern=ID_PATTERN, what="a ceremony id")
    if ceremony_id != script.ceremony_id:
        raise top.fail("ceremony_id", f"{ceremony_id!r} is not the script's ceremony "
                                      f"{script.ceremony_id!r}",
                       hint="use the answers file written for this script")
    identities: dict[str, Path] = {}
    ids = top.table("identities", required=False)
    if ids is not None:
        for key in list(ids.data):
            path = ids.text(key, max_len=400)
            if script.participant(key) is None:
                raise ids.fail(key, f"{key!r} is not a participant of the script")
            identities[key] = (base / path).resolve()
        ids.done()
    cards = _cards(top, script, base, identities)
    tokens = _tokens(top, script, base, identities, cards)
    # Whoever can sign (the checks below): a key file, a card or a token.
    signing: dict[str, object] = {**identities, **cards, **tokens}
    steps: dict[str, StepAnswers] = {}
    for s in top.tables("steps", min_len=0, max_len=200):
        sid = s.text("id", pattern=STEP_PATTERN, what="a step id")
        step = script.step(sid)
        if step is None:
            raise s.fail("id", f"the script has no step {sid!r}")
        if sid in steps:
            raise s.fail("id", f"step {sid!r} is answered twice")
        approvals = s.str_list("approvals", required=False, default=())
        witnesses = s.str_list("witnesses", required=False, default=())
        for field, names, role in (("approvals", approvals, "custodian"),
                                   ("witnesses", witnesses, "witness")):
            for who in names:
                participant = script.participant(who)
                if participant is None:
                    raise s.fail(field, f"{who!r} is not a participant of the script")
                # (an administrator the step names as approver: the policy allowed it)
                named = field == "approvals" and who in step.approvers
                if participant.role != role and not named:
                    raise s.fail(field, f"{who!r} is {article(participant.role)}, not a {role}")
                if who not in signing:
                    raise s.fail(field, f"{who!r} has no card under [cards] (nor a "
                                 "rehearsal key under [identities])",
                                 hint=f"add {who} = {{ pin_file = \"{who}.pin\" }} under "
                                      "[cards], or their identity token under [tokens]")
        confirm = s.text("confirm", required=False, max_len=64)
        abort = s.text("abort", required=False, max_len=400)
        deviations = _deviations(s, script) if "deviations" in s.data else ()
        s.done()
        steps[sid] = StepAnswers(sid, approvals, witnesses, confirm, abort, deviations)
    shares = _shares(top, script, base, cards) if "shares" in top.data else ()
    _check_card_delivery(top, script, cards)
    dice_file = _secret_file(top, "dice_file", bool(script.entropy.dice_rolls), base,
                             "the script's [entropy] asks for no dice")
    passphrase_file = _secret_file(top, "passphrase_file", script.shares.passphrase, base,
                                   "the script's [shares] has no passphrase")
    deviation_approvals = _signers(top, "deviations", "approvals", "custodian", script,
                                   signing)
    seal_witnesses = _signers(top, "seal", "witnesses", "witness", script, signing)
    top.done()
    return Answers(ceremony_id, identities, steps, name, shares, cards,
                   dice_file=dice_file, passphrase_file=passphrase_file,
                   deviation_approvals=deviation_approvals, seal_witnesses=seal_witnesses,
                   tokens=tokens)


def _deviations(s: Fields, script: Script) -> tuple[DeviationAnswer, ...]:
    """``deviations = [{ kind = "...", reason = "...", by = "..." }]`` under a step."""
    out = []
    for d in s.tables("deviations", min_len=1, max_len=16):
        kind = d.choice("kind", DECLARED_KINDS)
        reason = d.text("reason", max_len=400)
        by = d.text("by", pattern=PARTICIPANT_PATTERN, what="a participant id")
        if script.participant(by) is None:
            raise d.fail("by", f"{by!r} is not a participant of the script")
        d.done()
        out.append(DeviationAnswer(kind, reason, by))
    return tuple(out)


def _signers(top: Fields, table_name: str, field: str, role: str, script: Script,
             signing: dict[str, object]) -> tuple[str, ...]:
    """[deviations] approvals / [seal] witnesses: participants of ``role`` who can sign."""
    table = top.table(table_name, required=False)
    if table is None:
        return ()
    names: tuple[str, ...] = table.str_list(field, min_len=1, max_len=64)
    for who in names:
        participant = script.participant(who)
        if participant is None:
            raise table.fail(field, f"{who!r} is not a participant of the script")
        if participant.role != role:
            raise table.fail(field, f"{who!r} is {article(participant.role)}, not a {role}")
        if who not in signing:
            raise table.fail(field, f"{who!r} has no card under [cards] (nor a rehearsal key "
                             "under [identities])",
                             hint=f"add {who} = {{ pin_file = \"{who}.pin\" }} under [cards], "
                                  "or their identity token under [tokens]")
    table.done()
    return names


def _secret_file(top: Fields, name: str, wanted: bool, base: Path, unwanted: str
                 ) -> Path | None:
    """A file named for a typed secret (dice, passphrase): it must exist; only when used."""
    text: str | None = top.text(name, required=False, max_len=400)
    if text is None:
        return None
    if not wanted:
        raise top.fail(name, f"is given, but {unwanted}", hint=f"remove {name}")
    path = (base / text).resolve()
    if not path.is_file():
        raise top.fail(name, f"the file {text} does not exist",
                       hint="give its path relative to the answers file")
    return path


def _cards(top: Fields, script: Script, base: Path,
           identities: dict[str, Path]) -> dict[str, CardAnswer]:
    """[cards]: participant = { reader = "...", pin_file = "...", wait_seconds = N }."""
    table = top.table("cards", required=False)
    if table is None:
        return {}
    out: dict[str, CardAnswer] = {}
    for key in list(table.data):
        if script.participant(key) is None:
            raise table.fail(key, f"{key!r} is not a participant of the script")
        if key in identities:
            raise table.fail(key, f"{key} has both a card here and a key file under "
                             "[identities]", hint="give one way of signing per participant")
        card = table.table(key)
        assert card is not None
        reader = card.text("reader", required=False, max_len=200)
        pin_file = card.text("pin_file", required=False, max_len=400)
        wait = card.integer("wait_seconds", low=1, high=3600, default=300)
        card.done()
        out[key] = CardAnswer(key, reader, (base / pin_file).resolve() if pin_file else None,
                              wait)
    table.done()
    return out


URI_PATTERN = r"pkcs11:[^\s?]*\b(token|serial)=[^\s]+"
KEY_ID_PATTERN = r"([0-9a-f]{2}){1,32}"


def _tokens(top: Fields, script: Script, base: Path, identities: dict[str, Path],
            cards: dict[str, CardAnswer]) -> dict[str, TokenAnswer]:
    """[tokens]: participant = { uri = "pkcs11:token=...", key_label = "...", key_id = "..",
    pin_file = "...", module = "..." }: an identity key on the participant's own token."""
    table = top.table("tokens", required=False)
    if table is None:
        return {}
    out: dict[str, TokenAnswer] = {}
    for key in list(table.data):
        if script.participant(key) is None:
            raise table.fail(key, f"{key!r} is not a participant of the script")
        if key in identities or key in cards:
            where = "a key file under [identities]" if key in identities else \
                "a card under [cards]"
            raise table.fail(key, f"{key} has both an identity token here and {where}",
                             hint="give one way of signing per participant")
        entry = table.table(key)
        assert entry is not None
        uri = entry.text("uri", pattern=URI_PATTERN, max_len=400,
                         what="a PKCS#11 URI naming a token (pkcs11:token=LABEL)")
        if script.token.uri is not None and uri == script.token.uri:
            raise entry.fail("uri", "is the ceremony's own token, not the participant's",
                             hint="an identity key is on the custodian's own token")
        label = entry.text("key_label", max_len=100)
        key_id = entry.text("key_id", required=False, pattern=KEY_ID_PATTERN,
                            what="a key id in lowercase hex")
        pin_file = entry.text("pin_file", required=False, max_len=400)
        pin_path = (base / pin_file).resolve() if pin_file else None
        if pin_path is not None and not pin_path.is_file():
            raise entry.fail("pin_file", f"the file {pin_file} does not exist",
                             hint="give the path of the file holding the token's PIN "
                                  "(relative to the answers file)")
        module = entry.text("module", required=False, max_len=400)
        if module is not None and not Path(module).is_file():
            raise entry.fail("module", f"the PKCS#11 module {module} does not exist",
                             hint="give the path of the token's PKCS#11 library (a .so file)")
        entry.done()
        out[key] = TokenAnswer(key, uri, label, key_id, pin_path, module)
    table.done()
    return out


def _check_card_delivery(top: Fields, script: Script, cards: dict[str, CardAnswer]) -> None:
    """A ceremony whose [shares.delivery] sends a share to a card needs that card here."""
    if script.recovery is not None:
        return
    for holder, places in script.shares.delivery:
        if "card" in places and holder not in cards:
            raise top.fail("cards", f"the script sends {holder}'s share to their card, but "
                           f"[cards] names no card for {holder}",
                           hint=f"add {holder} = {{ pin_file = \"{holder}.pin\" }} under [cards]")


def _shares(top: Fields, script: Script, base: Path,
            cards: dict[str, CardAnswer]) -> tuple[ShareAnswer, ...]:
    """[[shares]]: who presents which share file in a recovery, in order."""
    if script.recovery is None:
        raise top.fail("shares", "shares are presented only in a recovery (a script with a "
                       "[recovery] table)", hint="remove [[shares]] from the answers file")
    holders = [m for g in script.shares.groups for m in g.members]
    out: list[ShareAnswer] = []
    for sh in top.tables("shares", min_len=1, max_len=256):
        who = sh.text("participant", pattern=PARTICIPANT_PATTERN, what="a participant id")
        if who not in holders:
            raise sh.fail("participant", f"{who!r} holds no share in the script's [shares]",
                          hint=f"the holders are {', '.join(holders)}")
        if any(a.participant == who for a in out):
            raise sh.fail("participant", f"{who}'s share is listed twice",
                          hint="each custodian presents their share once")
        on_card = sh.flag("card", default=False)
        text = sh.text("file", max_len=400, required=not on_card)
        if on_card:
            if text is not None:
                raise sh.fail("file", f"{who}'s share is read from their card (card = true), "
                              "so it has no file", hint="give either file or card = true")
            if who not in cards:
                raise sh.fail("card", f"{who}'s share is on their card, but [cards] names no "
                              f"card for {who}",
                              hint=f"add {who} = {{ pin_file = \"{who}.pin\" }} under [cards]")
            sh.done()
            out.append(ShareAnswer(who, None, card=True))
            continue
        path = (base / text).resolve()
        if not path.is_file():
            raise sh.fail("file", f"{who}'s share file {text} does not exist",
                          hint="give the path of the share sheet (relative to the answers "
                               "file)")
        sh.done()
        out.append(ShareAnswer(who, path))
    return tuple(out)


def load_answers(path: Path, script: Script) -> Answers:
    source = read_source(path, AnswersError, "answers")
    return parse_answers(source.text, source.name, script, path.parent)
