"""``ceremony status --tui``: the key dashboard in the terminal UI, read-only.

It shows the :class:`ceremony.status.Status` the CLI built (every bundle verified, every
lineage record checked) and decides nothing itself. Marks are symbols plus words, never
colour alone: ``!`` fails (overdue, does not verify), ``*`` to look at.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Static

from ceremony.status import (
    FAIL,
    MARK,
    WARN,
    KeyRow,
    Status,
    age,
    bundle_result,
    rotation_text,
)


class StatusApp(App[None]):
    """The key dashboard of one directory."""

    TITLE = "ceremony status"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    #title { background: $primary; color: $text; padding: 0 1; }
    #summary { padding: 0 1; }
    #summary.fail { background: $error 30%; }
    #keys { height: auto; max-height: 10; }
    #bundles { height: auto; max-height: 8; }
    .section { text-style: bold; padding: 1 1 0 1; }
    #findings { padding: 0 1; }
    #detail { padding: 0 1; color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("k", "focus('keys')", "Keys"),
        Binding("b", "focus('bundles')", "Bundles"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, report: Status) -> None:
        super().__init__()
        self.report = report

    def compose(self) -> ComposeResult:
        s = self.report
        fails = sum(f.level == FAIL for f in s.findings)
        warns = sum(f.level == WARN for f in s.findings)
        yield Static(f"ceremony status: {s.directory}", id="title", markup=False)
        verdict = "all fine" if s.ok else f"! {fails} failing: overdue or not verifying"
        yield Static(f"as of {s.time[:16].replace('T', ' ')} UTC · {len(s.keys)} root key(s),"
                     f" {len(s.bundles)} bundle(s), {len(s.records)} lineage record(s) · "
                     f"{verdict}; {warns} to look at", id="summary", markup=False,
                     classes="" if s.ok else "fail")
        with VerticalScroll():
            yield Static("Root keys", classes="section")
            yield DataTable(id="keys", cursor_type="row", zebra_stripes=True)
            yield Static("", id="detail", markup=False)
            yield Static("Findings", classes="section")
            yield Static(self._findings(), id="findings", markup=False)
            yield Static("Bundles", classes="section")
            yield DataTable(id="bundles", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def _findings(self) -> str:
        if not self.report.findings:
            return "none"
        return "\n".join(f"{MARK[f.level]} {f.level.upper():<4} {f.message}"
                         for f in self.report.findings)

    def on_mount(self) -> None:
        s = self.report
        keys = self.query_one("#keys", DataTable)
        keys.add_columns(" ", "root key", "algorithm", "state", "age", "next rotation")
        for k in s.keys:
            keys.add_row(MARK[s.level_of(k.fingerprint)], k.fingerprint[:16], k.algorithm,
                         k.state, age(k.age_days), rotation_text(k), key=k.fingerprint)
        if s.keys:
            self._detail(s.keys[0])
        bundles = self.query_one("#bundles", DataTable)
        bundles.add_columns(" ", "bundle", "ceremony, outcome")
        for b in s.bundles:
            bundles.add_row(MARK[s.level_of(b.path)], b.path, bundle_result(b), key=b.path)
        keys.focus()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "keys" and event.row_key.value is not None:
            found = [k for k in self.report.keys if k.fingerprint == event.row_key.value]
            if found:
                self._detail(found[0])

    def _detail(self, k: KeyRow) -> None:
        """The highlighted key's words, ceremonies, cadence and lineage, under the table."""
        rehearsal = " (REHEARSAL)" if k.rehearsal else ""
        last = "" if k.last_ceremony == k.ceremony else \
            f"; last {k.last_ceremony} ({k.last_kind}, {k.last_sealed[:10]})"
        self.query_one("#detail", Static).update(
            f"{k.words}\nmade by ceremony {k.ceremony}{rehearsal}{last}; cadence "
            f"{k.cadence}; lineage {'signed' if k.lineage else 'none'}")
