"""The live image's build configuration, checked fast (the build and boot are not run here).

iso-build/build.sh, build-twice.sh and boot-test.sh take minutes to an hour; these tests
read their inputs instead: every Debian package pinned, no network package, the tool and
its Python dependencies included and locked by digest, SOURCE_DATE_EPOCH and the snapshot
set, network drivers removed, the console and the serial self-test wired up.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from datetime import UTC, datetime

import pytest

from tests.conftest import REPO

ISO = REPO / "iso-build"
# Independent of forbidden-packages.txt: what the issue names, and their like.
NETWORK_PACKAGES = {
    "network-manager", "openssh-server", "openssh-client", "wpasupplicant",
    "isc-dhcp-client", "dhcpcd5", "dhcpcd-base", "ifupdown", "avahi-daemon", "cups-browsed",
    "systemd-resolved", "systemd-timesyncd", "ntp", "chrony", "bluez", "iw", "curl", "wget",
    "connman", "modemmanager", "ppp", "netplan.io", "dropbear", "iwd",
}
# What the image must carry (the list), by Debian package name.
REQUIRED = {"softhsm2", "opensc", "pcscd", "vsmartcard-vpcd", "zbar-tools", "cups", "python3",
            "python3-venv", "linux-image-amd64", "live-boot", "systemd-sysv"}
PIN = re.compile(r"^(?P<name>[a-z0-9][a-z0-9.+-]+)=(?P<version>(\d+:)?[0-9][A-Za-z0-9.+~-]*)$")


def entries(name: str) -> list[str]:
    lines = (ISO / name).read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def config() -> dict[str, str]:
    out = {}
    for line in entries("config.env"):
        key, _, value = line.partition("=")
        out[key] = value
    return out


@pytest.mark.parametrize("listing", ["packages.txt", "build-packages.txt"])
def test_every_debian_package_is_pinned(listing: str) -> None:
    names = []
    for entry in entries(listing):
        match = PIN.fullmatch(entry)
        assert match, f"{listing}: {entry!r} is not name=version"
        names.append(match.group("name"))
    assert len(names) == len(set(names)), f"{listing} names a package twice"


def test_no_network_package_and_the_tools_are_there() -> None:
    names = {e.split("=")[0] for e in entries("packages.txt")}
    assert not names & NETWORK_PACKAGES
    assert names >= REQUIRED, f"missing: {REQUIRED - names}"
    forbidden = set(entries("forbidden-packages.txt"))
    assert forbidden >= NETWORK_PACKAGES, "build.sh's refusal list misses network packages"
    assert not names & forbidden
    build = (ISO / "hooks" / "customize.sh").read_text()
    assert "forbidden-packages.txt" in build and "exit 1" in build


def test_reproducibility_inputs_are_fixed() -> None:
    conf = config()
    snapshot = datetime.strptime(conf["SNAPSHOT"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    epoch = int(conf["SOURCE_DATE_EPOCH"])
    assert epoch == int(snapshot.timestamp()), "SOURCE_DATE_EPOCH is not the snapshot's time"
    assert conf["SUITE"] == "bookworm" and conf["ARCH"] == "amd64"
    build = (ISO / "build.sh").read_text()
    assert "export SOURCE_DATE_EPOCH" in build
    assert "snapshot.debian.org/archive/debian/$SNAPSHOT" in build
    assert "check_pins" in build  # an unpinned version from the mirror fails the build
    for fixed in ("-mkfs-time", "-all-time", "touch -h -d \"@$SOURCE_DATE_EPOCH\"", "LC_ALL=C"):
        assert fixed in build, f"build.sh does not fix {fixed}"


def test_python_dependencies_are_locked_by_digest() -> None:
    lock = {}
    for entry in entries("python.lock"):
        sha, name, url = entry.split()
        assert re.fullmatch(r"[0-9a-f]{64}", sha)
        assert url.startswith("https://files.pythonhosted.org/") and url.endswith("/" + name)
        assert name.endswith(".tar.gz") or re.search(r"-(cp311|py3|py2\.py3)-(cp311|abi3|none)-"
                                                     r"(any|manylinux[\w.]*x86_64)\.whl$", name)
        project = re.split(r"-\d", name, maxsplit=1)[0].lower().replace("_", "-")
        lock[project] = name
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    for requirement in pyproject["project"]["dependencies"]:
        project = re.split(r"[<>=\[ ;]", requirement, maxsplit=1)[0].lower()
        assert project in lock, f"{project} (a dependency of ceremony) is not in python.lock"
    assert lock["pyscard"].endswith(".tar.gz")  # compiled in the builder chroot
    hook = (ISO / "hooks" / "customize.sh").read_text()
    assert "--no-index --no-deps" in hook and "pip check" in hook


def test_the_tool_is_installed_signed_and_checked() -> None:
    build = (ISO / "build.sh").read_text()
    assert "scripts/make_manifest.py" in build and "pip wheel" in build
    hook = (ISO / "hooks" / "customize.sh").read_text()
    assert "/usr/local/bin/ceremony" in hook
    assert "ceremony selftest" in hook  # the build fails if the installed tree is not signed
    assert "/etc/ceremony-image" in hook


def test_no_network_drivers_and_no_network_services() -> None:
    hook = (ISO / "hooks" / "customize.sh").read_text()
    for tree in ("drivers/net", "net/wireless", "net/bluetooth", "drivers/bluetooth"):
        assert tree in hook
    for unit in ("systemd-networkd.service", "systemd-timesyncd.service"):
        assert unit in hook
    assert "depmod" in hook and "update-initramfs" in hook
    blacklist = (ISO / "rootfs" / "etc" / "modprobe.d" / "ceremony-no-network.conf").read_text()
    for module in ("cfg80211", "bluetooth", "virtio_net", "e1000", "usbnet"):
        assert f"install {module} /bin/false" in blacklist


def test_console_and_serial_self_test() -> None:
    getty = ISO / "rootfs" / "etc" / "systemd" / "system" / "getty@tty1.service.d"
    assert "--autologin root" in (getty / "autologin.conf").read_text()
    assert "ceremony-console" in (ISO / "rootfs" / "root" / ".bash_profile").read_text()
    autotest = (ISO / "rootfs" / "usr" / "local" / "lib" / "ceremony" / "autotest.sh").read_text()
    for step in ("ceremony selftest", "ceremony attest", "ceremony rehearse", "ceremony verify"):
        assert step in autotest
    unit = (ISO / "rootfs" / "etc" / "systemd" / "system" / "ceremony-autotest.service")
    assert "ConditionKernelCommandLine=ceremony.autotest" in unit.read_text()
    boot = (ISO / "boot-test.sh").read_text()
    assert "-nic none" in boot and "-nodefaults" in boot and "ceremony.autotest" in boot


@pytest.mark.parametrize("script", sorted(p.relative_to(ISO).as_posix() for p in [
    *ISO.glob("*.sh"), *ISO.glob("hooks/*.sh"), ISO / "rootfs/usr/local/bin/ceremony-console",
    ISO / "rootfs/usr/local/lib/ceremony/autotest.sh"]))
def test_scripts_parse_and_are_executable(script: str) -> None:
    path = ISO / script
    assert path.stat().st_mode & 0o111, f"{script} is not executable"
    shell = "bash" if path.read_text().startswith("#!/usr/bin/env bash") or \
        path.read_text().startswith("#!/bin/bash") else "sh"
    assert shutil.which(shell)
    done = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
