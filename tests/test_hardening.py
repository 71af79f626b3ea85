"""Memory hygiene at the process level: the CLI forbids core files before anything else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import resource, sys
from ceremony.cli.main import main
from ceremony.hardening import dumpable
before = (resource.getrlimit(resource.RLIMIT_CORE), dumpable())
code = main(["sample", sys.argv[1]])
after = (resource.getrlimit(resource.RLIMIT_CORE), dumpable())
print("RESULT", code, before, after)
"""


def test_the_cli_forbids_core_dumps_before_it_runs_a_command(tmp_path: Path) -> None:
    # A fresh interpreter with core files allowed (soft limit raised to the hard one), so
    # that the change is the CLI's doing and not inherited.
    result = subprocess.run(
        [sys.executable, "-c", "import resource, runpy, sys;"
         "soft, hard = resource.getrlimit(resource.RLIMIT_CORE);"
         "resource.setrlimit(resource.RLIMIT_CORE, (hard, hard));"
         f"sys.argv = ['probe', {str(tmp_path / 'sample')!r}];"
         f"exec({PROBE!r})"],
        capture_output=True, text=True, check=True)
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    _, code, rest = line.split(" ", 2)
    assert code == "0", result.stderr
    assert (tmp_path / "sample" / "script.toml").is_file()
    assert rest.endswith("((0, 0), False)"), line
    assert not rest.startswith("((0, 0), False)"), "the probe started with dumps already off"


def test_a_ceremony_process_has_no_core_limit_and_is_not_dumpable(tmp_path: Path) -> None:
    """The installed entry point, as a user runs it: its /proc entry says so."""
    probe = tmp_path / "limits.py"
    probe.write_text(
        "import sys\n"
        "from ceremony.cli import main as cli\n"
        "def show(args):\n"
        "    print(open('/proc/self/limits').read())\n"
        "    print(open('/proc/self/status').read())\n"
        "    return 0\n"
        "cli.cmd_sample = show\n"
        "sys.exit(cli.main(['sample', 'unused']))\n")
    result = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True,
                            check=True)
    core = next(line for line in result.stdout.splitlines()
                if line.startswith("Max core file size"))
    assert core.split()[4:6] == ["0", "0"], core
