"""The policy's ``[lifecycle]`` table: a root key's rotation cadence and who signs its events.

A key's lifecycle events (activation, rotation due, suspension, deactivation, revocation,
compromise, destruction; docs/print-and-lineage.md, ADR 14) are signed by a quorum of the
custodians who signed its lineage record. This table says how many, and when the key must
be replaced. Every field is optional:

    [lifecycle]
    rotation_months = 24     # replace the key this many months after its activation
    notice_days = 90         # "rotation due" this many days before that date
    event_quorum = 2         # signatures a lifecycle event needs (default: the record's)
    compromise_quorum = 1    # a compromise may need fewer, so that it is reported at once

Without ``rotation_months`` the cadence is the policy's ``max_key_lifetime_days``. Pure: the
lineage module and the verifier side import it; it reads no file.
"""

from __future__ import annotations

from dataclasses import dataclass

from ceremony.model.strict import Fields

# The days in N calendar months, on average (the Gregorian year is 365.2425 days).
DAYS_PER_MONTH = 365.2425 / 12


@dataclass(frozen=True)
class Lifecycle:
    """[lifecycle]: 0 in a quorum means "the lineage record's own threshold" (the approvals
    the key step required); 0 months means "the policy's max_key_lifetime_days"."""

    rotation_months: int = 0
    notice_days: int = 90
    event_quorum: int = 0
    compromise_quorum: int = 0

    def quorum(self, event: str, record_threshold: int) -> tuple[int, str]:
        """(signatures needed, the policy field that says so) for a lifecycle ``event``."""
        base = self.event_quorum or record_threshold
        if event == "compromise" and self.compromise_quorum:
            return self.compromise_quorum, "lifecycle.compromise_quorum"
        if self.event_quorum:
            return base, "lifecycle.event_quorum"
        return base, "the lineage record's threshold"


def read_lifecycle(table: Fields | None, min_approvals: int, lifetime_days: int) -> Lifecycle:
    """Strictly read the policy's ``[lifecycle]`` table (CER-STRICT-INPUT).

    The cadence must fit in the key's longest lifetime, and an ordinary event needs at
    least the policy's ``quorum.min_approvals`` (only a compromise may need fewer).
    """
    if table is None:
        return Lifecycle()
    months = table.integer("rotation_months", low=1, high=1200, default=0)
    if months and round(months * DAYS_PER_MONTH) > lifetime_days:
        raise table.fail("rotation_months", f"{months} months is longer than the key's "
                         f"longest lifetime (max_key_lifetime_days = {lifetime_days})",
                         hint="rotate sooner, or raise max_key_lifetime_days")
    notice = table.integer("notice_days", low=0, high=3650, default=90)
    quorum = table.integer("event_quorum", low=1, high=16, default=0)
    if quorum and quorum < min_approvals:
        raise table.fail("event_quorum", f"{quorum} is below quorum.min_approvals "
                         f"({min_approvals})", hint="a lifecycle event needs at least the "
                         "approvals of a sensitive step; only compromise_quorum may be lower")
    compromise = table.integer("compromise_quorum", low=1, high=16, default=0)
    table.done()
    return Lifecycle(months, notice, quorum, compromise)
