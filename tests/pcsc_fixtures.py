"""The real PC/SC stack for card tests: pcscd with vsmartcard's vpcd driver, our virtual card.

pcscd runs in the foreground with a private reader configuration (recipes in
shared/recipes.md) and is stopped by its pid. Its socket is machine-wide
(/run/pcscd/pcscd.comm), so one test run at a time may own it: ``pcsc_stack`` holds an
exclusive lock file while a module's card tests run, and other pytest processes wait. Each
test gets its own card (``virtual_card``), inserted into the first vpcd reader and pulled
out (the process stopped, the reader seen empty) afterwards.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from tests.vcard.card import CardState, create_card
from tests.vcard.vpcd import VPCD_PORT

REPO = Path(__file__).resolve().parent.parent
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")
LOCK_FILE = Path(tempfile.gettempdir()) / "ceremony-tests-pcscd.lock"
READER = "Virtual PCD 00 00"  # vpcd's reader on port 35963
LOCK_WAIT = 300.0  # another test run's card tests take about 15 s
START_TIMEOUT = 10.0
CONF_DIR = "ceremony-tests-reader.conf.d"  # names our pcscd in `ps`, and to the next test run


def _pcscd() -> str | None:
    return shutil.which("pcscd") or next(
        (p for p in ("/usr/sbin/pcscd", "/sbin/pcscd") if os.access(p, os.X_OK)), None)


def _socket_alive() -> bool:
    """True when some pcscd answers on the machine-wide socket."""
    if not PCSCD_SOCKET.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(PCSCD_SOCKET))
        except OSError:
            return False  # stale: the next pcscd cleans it up
    return True


def _reader_state(scard: Any, context: Any) -> int:
    hresult, states = scard.SCardGetStatusChange(context, 0, [(READER, scard.SCARD_STATE_UNAWARE)])
    if hresult != scard.SCARD_S_SUCCESS:
        return 0
    return int(states[0][1])


@dataclass
class PcscStack:
    """A running pcscd of ours with vpcd's two readers."""

    directory: Path
    process: subprocess.Popen[bytes]
    log: Path
    reader: str = READER

    def card_present(self) -> bool:
        import smartcard.scard as scard

        hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult != scard.SCARD_S_SUCCESS:
            return False
        try:
            return bool(_reader_state(scard, context) & scard.SCARD_STATE_PRESENT)
        finally:
            scard.SCardReleaseContext(context)

    def wait_for_card(self, present: bool, card: subprocess.Popen[bytes] | None = None,
                      timeout: float = START_TIMEOUT) -> None:
        """Until the reader shows the card (or shows none); fails with the logs if not."""
        deadline = time.monotonic() + timeout
        while self.card_present() != present:
            if card is not None and card.poll() is not None:
                pytest.fail(f"the virtual card exited with {card.returncode} before the "
                            f"reader saw it; pcscd log:\n{self.log.read_text()[-2000:]}")
            if self.process.poll() is not None:
                pytest.fail(f"pcscd exited with {self.process.returncode}:\n"
                            f"{self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"the reader did not show the card {'in' if present else 'out'} "
                            f"within {timeout} s; pcscd log:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.01)


@contextlib.contextmanager
def _machine_lock() -> Iterator[IO[str]]:
    """The lock every test run takes before it starts pcscd (one pcscd per machine)."""
    handle = LOCK_FILE.open("a+")
    try:
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test run has held {LOCK_FILE} (pcscd) for "
                                f"{LOCK_WAIT:.0f} s")
                time.sleep(0.2)
        yield handle
    finally:
        handle.close()  # releases the lock


def _stop_leftover(lock: IO[str]) -> None:
    """Stop the pcscd a killed test run left running (its pid is in the lock file, and
    its command line names our reader configuration); its cards exit with it."""
    lock.seek(0)
    lines = lock.read().split()
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    if len(lines) < 2 or not lines[1].isdigit():
        return
    pid = int(lines[1])
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return
    if not cmdline or Path(cmdline[0].decode()).name != "pcscd" or \
            not any(arg.endswith(CONF_DIR.encode()) for arg in cmdline):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while _socket_alive() and time.monotonic() < deadline:  # a zombie keeps /proc/PID
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def pcsc_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PcscStack]:
    """pcscd in the foreground with only vpcd's reader configuration, for one test module.

    Module scope, not session: the machine-wide lock is held only while card tests run
    (about 15 s), not for the rest of a long suite other test runs would wait on."""
    from tests.conftest import require

    pcscd = _pcscd()
    require(pcscd is not None and VPCD_DRIVER.is_file(),
            "pcscd with vsmartcard's vpcd driver (Debian pcscd, vsmartcard-vpcd)")
    require(importlib.util.find_spec("smartcard") is not None, "pyscard")
    assert pcscd is not None
    with running_pcscd(tmp_path_factory.mktemp("pcscd"), pcscd,
                       lambda why: require(False, why)) as stack:
        yield stack


@contextlib.contextmanager
def running_pcscd(directory: Path, pcscd: str,
                  refuse: Callable[[str], None]) -> Iterator[PcscStack]:
    """Our pcscd with vpcd's readers, under the machine lock, stopped on exit (the fixture
    above, and scripts/bench.py's card round trip). ``refuse`` is called, and must raise,
    when a pcscd not started by us owns the machine's socket."""
    with _machine_lock() as lock:
        _stop_leftover(lock)
        if _socket_alive():
            refuse(f"a pcscd these tests did not start owns {PCSCD_SOCKET}; stop it "
                   "(systemctl stop pcscd.socket pcscd) so the tests can start their own, "
                   "with vpcd")
        conf = directory / CONF_DIR
        conf.mkdir()
        (conf / "vpcd").write_text(f'FRIENDLYNAME "Virtual PCD"\nDEVICENAME /dev/null:0x8C7B\n'
                                   f"LIBPATH {VPCD_DRIVER}\nCHANNELID 0x8C7B\n")
        log = directory / "pcscd.log"
        with log.open("wb") as out:
            process = subprocess.Popen([pcscd, "--foreground", "--config", str(conf)],
                                       stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        lock.write(f"{process.pid}\n")  # for the next run, should this one be killed
        lock.flush()
        stack = PcscStack(directory, process, log)
        try:
            _wait_for_reader(stack)
            yield stack
        finally:
            _stop(process)


def _wait_for_reader(stack: PcscStack) -> None:
    from smartcard.scard import (
        SCARD_S_SUCCESS,
        SCARD_SCOPE_USER,
        SCardEstablishContext,
        SCardListReaders,
        SCardReleaseContext,
    )

    deadline = time.monotonic() + START_TIMEOUT
    while True:
        hresult, context = SCardEstablishContext(SCARD_SCOPE_USER)
        if hresult == SCARD_S_SUCCESS:
            hresult, readers = SCardListReaders(context, [])
            SCardReleaseContext(context)
            if hresult == SCARD_S_SUCCESS and READER in readers:
                return
        if stack.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"pcscd did not show {READER!r}:\n{stack.log.read_text()[-2000:]}")
        time.sleep(0.02)


@dataclass
class VirtualCard:
    """One virtual OpenPGP card of a test: its state file and, while inserted, its process."""

    stack: PcscStack
    state_file: Path
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.state_file.with_suffix(".log")

    @property
    def reader(self) -> str:
        return self.stack.reader

    def create(self, **factory: Any) -> VirtualCard:
        """A factory-fresh card (see tests.vcard.card.CardState.factory), not inserted."""
        create_card(self.state_file, **factory)
        return self

    def insert(self, *, pull_at: int | None = None) -> VirtualCard:
        """Into the reader (with ``pull_at``, an instruction byte: the card leaves the
        reader in the middle of the first such command, see tests.vcard.vpcd.serve)."""
        if not self.state_file.exists():
            self.create()
        assert self.process is None, "the card is inserted already"
        extra = [] if pull_at is None else ["--pull-at", f"{pull_at:02X}"]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.vcard", "--state", str(self.state_file),
                 "--port", str(VPCD_PORT), *extra], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL)
        self.stack.wait_for_card(True, self.process)
        return self

    def remove(self) -> None:
        if self.process is None:
            return
        _stop(self.process)
        self.process = None
        self.stack.wait_for_card(False)

    def state(self) -> CardState:
        """What the card holds now (keys, PINs, counters), read from its file."""
        return CardState.load(self.state_file)


@pytest.fixture
def virtual_card(pcsc_stack: PcscStack, tmp_path: Path) -> Iterator[VirtualCard]:
    """A virtual card for this test (``.create(...)`` to choose its factory state, then
    ``.insert()``); pulled out of the reader at the end."""
    card = VirtualCard(pcsc_stack, tmp_path / "card.json")
    try:
        yield card
    finally:
        card.remove()
