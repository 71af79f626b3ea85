"""Environment attestation (CER-ATTEST-*) and release integrity, against constructed conditions.

Network checks run for real inside network namespaces (`ip netns add` + veth; needs root,
skipped loudly without it, a failure under CI). The other checks look at constructed
/sys and /proc trees, a copy of the package signed with a key made here, a fake PKCS#11
module file, an injected clock and a hand-made ISO 9660 medium.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.attest import (
    Environment,
    attestation_for,
    check_clock,
    check_image,
    check_media,
    check_module,
    check_network,
    check_python,
    check_radio,
    check_routes,
    check_tool,
    iso_digest,
    run_checks,
)
from ceremony.canonical import canonical_bytes
from ceremony.errors import PolicyFileError, QuorumError
from ceremony.manifest import (
    MANIFEST_NAME,
    RELEASE_KEY_NAME,
    build_manifest,
    dump_manifest,
    sign_manifest,
    verify_tree,
)
from ceremony.model import attestation as at
from ceremony.model.attestation import (
    AttestationError,
    CheckResult,
    Waiver,
    apply_waivers,
    attestation_record,
    require_attested,
)
from ceremony.model.policy import Policy, parse_policy
from ceremony.rehearsal import sample_texts
from tests.conftest import REPO, require

BUILT = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
PACKAGE = REPO / "ceremony"


# ------------------------------------------------------------------ helpers


def policy(extra: str = "") -> Policy:
    return parse_policy(sample_texts()[1] + extra, "policy.toml")


def copy_package(tmp_path: Path) -> Path:
    """A copy of the package as it would be installed: sources and data, no caches."""
    target = tmp_path / "site" / "ceremony"
    shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns(
        "__pycache__", "*.pyc", MANIFEST_NAME, "release-key.pub"))
    return target


def sign_tree(package: Path, key: Ed25519PrivateKey, python: list[str] | None = None) -> None:
    """Pin ``key`` in the tree, then write its signed manifest (as make_manifest does)."""
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    (package / RELEASE_KEY_NAME).write_bytes(pem)
    signed = build_manifest(package, version="0.1.0", built=BUILT,
                            python=python or [f"{sys.version_info[0]}.{sys.version_info[1]}"])
    (package / MANIFEST_NAME).write_bytes(dump_manifest(sign_manifest(signed, key)))


@pytest.fixture
def signed_package(tmp_path: Path) -> Path:
    package = copy_package(tmp_path)
    sign_tree(package, Ed25519PrivateKey.generate())
    return package


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def quiet(**kw: Any) -> Environment:
    """An environment whose network view is empty unless given (no real /sys)."""
    return Environment(**{"addresses": dict, **kw})


def failed(result: CheckResult, cid: str) -> str:
    """The result must be a failure of check ``cid`` with one plain sentence."""
    assert (result.id, result.result) == (cid, "fail"), result
    assert result.sentence and "\n" not in result.sentence and "Traceback" not in result.sentence
    assert result.hint
    return result.sentence


# ------------------------------------------------------------------ network namespaces

_NS_COUNTER = itertools.count()


def _netns_available() -> bool:
    if shutil.which("ip") is None or os.geteuid() != 0:
        return False
    name = f"cer-probe-{os.getpid()}"
    done = subprocess.run(["ip", "netns", "add", name], capture_output=True, check=False)
    if done.returncode != 0:
        return False
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return True


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh network namespace with only its loopback up; removed afterwards."""
    require(_netns_available(), "network namespaces (`ip netns add` as root, iproute2)")
    name = f"cer-att-{os.getpid()}-{next(_NS_COUNTER)}"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def add_veth(ns: str, *, up: bool, address: str | None, route: bool = False) -> str:
    """A veth pair with one end, `ceth0`, inside ``ns``; the host end is deleted with it."""
    host = f"ch{os.getpid() % 10000}x{next(_NS_COUNTER)}"
    ip("link", "add", host, "type", "veth", "peer", "name", "ceth0", "netns", ns)
    ip("link", "set", host, "up")
    if address:
        ip("-n", ns, "addr", "add", address, "dev", "ceth0")
    if up:
        ip("-n", ns, "link", "set", "ceth0", "up")
    if route and address:
        gateway = address.split("/")[0].rsplit(".", 1)[0] + ".1"
        ip("-n", ns, "route", "add", "default", "via", gateway)
    return "ceth0"


def attest_in(ns: str, *args: str) -> tuple[int, dict[str, Any], str]:
    """`ceremony attest --json` run inside ``ns``: exit code, record by check id, stderr."""
    done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "ceremony.cli.main",
                           "attest", "--json", "--module", sys.executable, *args],
                          capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
    record = json.loads(done.stdout)
    return done.returncode, {c["id"]: c for c in record["checks"]}, done.stderr


def test_namespace_with_only_loopback_passes_the_network_checks(netns: str) -> None:
    code, checks, stderr = attest_in(netns)
    assert checks[at.NET]["result"] == "pass", checks[at.NET]
    assert checks[at.ROUTE]["result"] == "pass", checks[at.ROUTE]
    assert checks[at.NET]["facts"]["interfaces"] == {}
    assert code == 1 and stderr == ""  # the development tree is unsigned and not a live image


def test_interface_up_with_an_address_and_a_default_route_fails(netns: str) -> None:
    add_veth(netns, up=True, address="10.77.0.2/24", route=True)
    code, checks, _ = attest_in(netns)
    assert code == 1
    net, route = checks[at.NET], checks[at.ROUTE]
    assert net["result"] == "fail"
    assert "network interface ceth0 is up with address 10.77.0.2/24" in net["sentence"]
    assert net["facts"]["interfaces"]["ceth0"]["up"] is True
    assert route["result"] == "fail"
    assert "IPv4 via 10.77.0.1 on ceth0" in route["sentence"]


def test_interface_configured_but_down_fails(netns: str) -> None:
    add_veth(netns, up=False, address="10.78.0.2/24")
    _, checks, _ = attest_in(netns)
    net = checks[at.NET]
    assert net["result"] == "fail"
    assert "ceth0 has address 10.78.0.2/24" in net["sentence"]
    assert checks[at.ROUTE]["result"] == "pass"


def test_interface_present_but_down_and_unconfigured_passes(netns: str) -> None:
    add_veth(netns, up=False, address=None)
    _, checks, _ = attest_in(netns)
    assert checks[at.NET]["result"] == "pass"
    assert "ceth0 present but down" in checks[at.NET]["sentence"]


def test_rehearsal_waives_the_network_checks_and_says_so(netns: str) -> None:
    add_veth(netns, up=True, address="10.79.0.2/24", route=True)
    code, checks, _ = attest_in(netns, "--rehearsal")
    for cid in (at.NET, at.ROUTE):
        assert checks[cid]["result"] == "waived"
        assert checks[cid]["waived_by"] == "rehearsal"
        assert "waived: this is a rehearsal" in checks[cid]["sentence"]
    assert code == 0


def test_text_output_names_the_id_and_a_plain_sentence(netns: str) -> None:
    add_veth(netns, up=True, address="10.80.0.2/24")
    done = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-m",
                           "ceremony.cli.main", "attest", "--module", sys.executable],
                          capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
    assert done.returncode == 1
    line = next(x for x in done.stdout.splitlines() if at.NET in x)
    assert line.startswith("[fail  ]") and "ceth0 is up" in line
    assert "no secret may be provisioned" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


# ------------------------------------------------------------------ constructed /sys and /proc


def test_network_check_reads_flags_and_type(tmp_path: Path) -> None:
    net = tmp_path / "sys" / "class" / "net"
    write(net / "lo" / "type", "772\n")
    write(net / "lo" / "flags", "0x9\n")
    write(net / "eth0" / "type", "1\n")
    write(net / "eth0" / "flags", "0x1002\n")
    env = quiet(sys_root=tmp_path / "sys", addresses=lambda: {"lo": ["127.0.0.1/8"]})
    assert check_network(env).result == "pass"
    write(net / "eth0" / "flags", "0x1003\n")
    assert "eth0 is up" in failed(check_network(env), at.NET)


def test_network_checks_fail_closed_when_they_cannot_look(tmp_path: Path) -> None:
    env = quiet(sys_root=tmp_path / "no-sys", proc_root=tmp_path / "no-proc")
    assert "cannot be listed" in failed(check_network(env), at.NET)
    assert "cannot be read" in failed(check_routes(env), at.ROUTE)
    media = {r.id: r for r in run_checks(env)}[at.MEDIA]
    assert "could not be checked" in failed(media, at.MEDIA)


def test_default_routes_from_proc(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    header = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
    write(proc / "net" / "route",
          header + "eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")
    # The kernel's IPv6 "unreachable" default on lo (RTF_REJECT) is not a route out.
    lo_reject = ("00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
                 "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n")
    write(proc / "net" / "ipv6_route", lo_reject)
    env = quiet(proc_root=proc)
    assert check_routes(env).result == "pass"
    write(proc / "net" / "route", header
          + "eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n")
    assert "IPv4 via 192.168.0.1 on eth0" in failed(check_routes(env), at.ROUTE)
    write(proc / "net" / "route", header)
    write(proc / "net" / "ipv6_route", lo_reject
          + "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
          "fe800000000000000000000000000001 00000400 00000001 00000000 00000003 wlan0\n")
    assert "IPv6 via fe80::1 on wlan0" in failed(check_routes(env), at.ROUTE)


def rfkill(root: Path, name: str, kind: str, phy: str, soft: str, hard: str = "0") -> None:
    for leaf, value in (("type", kind), ("name", phy), ("soft", soft), ("hard", hard)):
        write(root / "class" / "rfkill" / name / leaf, value + "\n")


def test_an_unblocked_radio_fails(tmp_path: Path) -> None:
    sysfs = tmp_path / "sys"
    rfkill(sysfs, "rfkill0", "wlan", "phy0", soft="0")
    rfkill(sysfs, "rfkill1", "bluetooth", "hci0", soft="1")
    env = quiet(sys_root=sysfs)
    assert "wlan radio phy0 (rfkill0) is not blocked" in failed(check_radio(env), at.RADIO)
    rfkill(sysfs, "rfkill0", "wlan", "phy0", soft="0", hard="1")  # the hardware switch
    result = check_radio(env)
    assert result.result == "pass" and "every radio is blocked" in result.sentence


def test_a_bluetooth_adapter_without_rfkill_fails(tmp_path: Path) -> None:
    sysfs = tmp_path / "sys"
    (sysfs / "class" / "bluetooth" / "hci0").mkdir(parents=True)
    assert "hci0" in failed(check_radio(quiet(sys_root=sysfs)), at.RADIO)
    assert check_radio(quiet(sys_root=tmp_path / "empty")).result == "pass"


def usb_disk(sysfs: Path, disk: str = "sdb", removable: str = "1", bus: str = "usb1/1-1") -> None:
    """/sys/class/block/<disk>1 -> a partition of a disk behind ``bus``."""
    device = sysfs / "devices" / "pci0000:00" / "0000:00:14.0" / bus / "host6" / "block" / disk
    write(device / "removable", removable + "\n")
    write(device / f"{disk}1" / "partition", "1\n")
    links = sysfs / "class" / "block"
    links.mkdir(parents=True, exist_ok=True)
    (links / f"{disk}1").symlink_to(device / f"{disk}1")
    (links / disk).symlink_to(device)


def test_writable_removable_media_fails(tmp_path: Path) -> None:
    sysfs, proc = tmp_path / "sys", tmp_path / "proc"
    usb_disk(sysfs)
    write(proc / "mounts", "proc /proc proc rw 0 0\n/dev/vda / ext4 rw,relatime 0 0\n"
          "/dev/sdb1 /media/USB\\040STICK vfat rw,nosuid,nodev 0 0\n")
    env = quiet(sys_root=sysfs, proc_root=proc)
    sentence = failed(check_media(env), at.MEDIA)
    assert "/dev/sdb1 on /media/USB STICK" in sentence
    write(proc / "mounts", "/dev/sdb1 /media/USB\\040STICK vfat ro,nosuid,nodev 0 0\n")
    assert check_media(env).result == "pass"


def test_usb_disk_not_flagged_removable_still_counts(tmp_path: Path) -> None:
    sysfs, proc = tmp_path / "sys", tmp_path / "proc"
    usb_disk(sysfs, "sdc", removable="0")
    usb_disk(sysfs, "nvme0n", removable="0", bus="nvme")  # an internal disk
    write(proc / "mounts", "/dev/nvme0n1 / ext4 rw 0 0\n/dev/sdc1 /mnt ext4 rw 0 0\n")
    sentence = failed(check_media(quiet(sys_root=sysfs, proc_root=proc)), at.MEDIA)
    assert "/dev/sdc1 on /mnt" in sentence and "nvme" not in sentence


# ------------------------------------------------------------------ tool files and manifest


def test_signed_tree_passes(signed_package: Path) -> None:
    result = check_tool(quiet(package_dir=signed_package), verify_tree(signed_package))
    assert result.result == "pass", result
    assert result.facts["files"] > 50 and result.facts["version"] == "0.1.0"


def test_a_modified_installed_file_is_named(signed_package: Path) -> None:
    target = signed_package / "engine" / "core.py"
    target.write_text(target.read_text().replace("def start(", "def start( ", 1))
    result = check_tool(quiet(package_dir=signed_package), verify_tree(signed_package))
    sentence = failed(result, at.TOOL)
    assert "modified: engine/core.py" in sentence
    assert result.facts["modified"] == ["engine/core.py"]


def test_a_removed_and_an_added_file_are_named(signed_package: Path) -> None:
    (signed_package / "data" / "recovery.toml").unlink()
    (signed_package / "adapters" / "exfiltrate.py").write_text("print('hi')\n")
    (signed_package / "adapters" / "__pycache__").mkdir(exist_ok=True)
    (signed_package / "adapters" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"ignored")
    sentence = failed(check_tool(quiet(), verify_tree(signed_package)), at.TOOL)
    assert "missing: data/recovery.toml" in sentence
    assert "not in the manifest: adapters/exfiltrate.py" in sentence
    assert "pycache" not in sentence


def test_a_manifest_edited_to_match_a_change_fails_its_signature(signed_package: Path) -> None:
    target = signed_package / "attest.py"
    target.write_text(target.read_text() + "\n# changed\n")
    doc = json.loads((signed_package / MANIFEST_NAME).read_text())
    doc["signed"]["files"]["attest.py"] = hashlib.sha256(target.read_bytes()).hexdigest()
    (signed_package / MANIFEST_NAME).write_bytes(dump_manifest(doc))
    report = verify_tree(signed_package)
    assert report.state == "bad-signature"
    assert "not signed by a pinned release key" in failed(check_tool(quiet(), report), at.TOOL)


def test_a_manifest_signed_by_another_key_fails(signed_package: Path) -> None:
    pinned = (signed_package / RELEASE_KEY_NAME).read_bytes()
    sign_tree(signed_package, Ed25519PrivateKey.generate())
    (signed_package / RELEASE_KEY_NAME).write_bytes(pinned)
    assert verify_tree(signed_package).state == "bad-signature"


def test_unsigned_tree_and_missing_key(tmp_path: Path, signed_package: Path) -> None:
    bare = copy_package(tmp_path / "bare")
    report = verify_tree(bare)
    assert report.state == "unsigned" and "development tree" in report.sentence
    assert check_tool(quiet(), report).state == at.TOOL_UNSIGNED
    (signed_package / RELEASE_KEY_NAME).unlink()
    assert verify_tree(signed_package).state == "no-key"


def test_make_manifest_script_is_deterministic(tmp_path: Path) -> None:
    package = copy_package(tmp_path)
    key = tmp_path / "release-key.pem"
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1767225600"}
    script = [sys.executable, str(REPO / "scripts" / "make_manifest.py")]
    made = subprocess.run([*script, "--new-key", str(key)], capture_output=True, text=True,
                          check=False)
    assert made.returncode == 0 and "BEGIN PUBLIC KEY" in made.stdout
    assert key.stat().st_mode & 0o077 == 0
    refused = subprocess.run([*script, "--key", str(key), "--package", str(package)],
                             capture_output=True, text=True, env=env, check=False)
    assert refused.returncode == 1 and "not pinned" in refused.stderr
    outputs = []
    for _ in range(2):
        done = subprocess.run([*script, "--key", str(key), "--package", str(package), "--pin"],
                              capture_output=True, text=True, env=env, check=False)
        assert done.returncode == 0, done.stderr
        outputs.append((package / MANIFEST_NAME).read_bytes())
    assert outputs[0] == outputs[1]
    signed = json.loads(outputs[0])["signed"]
    assert signed["built"] == "2026-01-01T00:00:00Z"
    assert "engine/core.py" in signed["files"] and RELEASE_KEY_NAME in signed["files"]
    assert verify_tree(package).ok


def run_copy(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The `ceremony` command imported from the copied tree, not from the checkout."""
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "ceremony.cli.main", *args], cwd=site,
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def test_selftest_command_names_a_modified_file(signed_package: Path) -> None:
    site = signed_package.parent
    where = run_copy(site, "selftest", "--json")
    assert where.returncode == 0, where.stdout + where.stderr
    assert all(t["result"] == "pass" for t in json.loads(where.stdout)["tests"])
    target = signed_package / "model" / "attestation.py"
    target.write_text(target.read_text().replace('NEVER_WAIVABLE = (TOOL,)',
                                                 'NEVER_WAIVABLE = ()'))
    done = run_copy(site, "selftest")
    assert done.returncode == 1
    assert "[fail] CER-ATTEST-TOOL" in done.stdout
    assert "modified: model/attestation.py" in done.stdout
    assert "selftest FAILED" in done.stdout and "Traceback" not in done.stderr
    attest = run_copy(site, "attest", "--json", "--rehearsal", "--module", sys.executable)
    tool = next(c for c in json.loads(attest.stdout)["checks"] if c["id"] == at.TOOL)
    assert tool["result"] == "fail"  # a rehearsal does not waive a modified tool
    assert attest.returncode == 1


# ------------------------------------------------------------------ module, python, clock


def test_a_wrong_module_hash_fails(tmp_path: Path) -> None:
    module = tmp_path / "libvendor-pkcs11.so"
    module.write_bytes(b"\x7fELF pretend module")
    digest = hashlib.sha256(module.read_bytes()).hexdigest()
    wrong = hashlib.sha256(b"the approved module").hexdigest()
    sentence = failed(check_module(quiet(module=str(module), module_sha256=(wrong,))),
                      at.MODULE)
    assert f"has SHA-256 {digest}" in sentence and "not a pinned digest" in sentence
    ok = check_module(quiet(module=str(module), module_sha256=(wrong, digest)))
    assert ok.result == "pass" and ok.facts["sha256"] == digest
    unpinned = check_module(quiet(module=str(module)))
    assert unpinned.result == "pass" and "not pinned, recorded" in unpinned.sentence
    assert "does not exist" in failed(check_module(quiet(module=str(tmp_path / "no.so"))),
                                      at.MODULE)


def test_policy_pins_the_module_through_the_cli(tmp_path: Path) -> None:
    module = tmp_path / "module.so"
    module.write_bytes(b"module bytes")
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(sample_texts()[1] + "\n[attestation]\nmodule_sha256 = [\""
                           + "ab" * 32 + "\"]\n")
    done = subprocess.run([sys.executable, "-m", "ceremony.cli.main", "attest", "--json",
                           "--policy", str(policy_file), "--module", str(module)],
                          capture_output=True, text=True, cwd=REPO, check=False)
    module_check = next(c for c in json.loads(done.stdout)["checks"] if c["id"] == at.MODULE)
    assert module_check["result"] == "fail" and done.returncode == 1
    assert module_check["facts"]["pinned"] == ["ab" * 32]


def test_python_version(signed_package: Path) -> None:
    tree = verify_tree(signed_package)
    assert check_python(quiet(), tree).result == "pass"
    old = failed(check_python(quiet(python=(3, 10, 12)), tree), at.PYTHON)
    assert "older than the 3.11" in old
    other = failed(check_python(quiet(python=(3, 99, 0)), tree), at.PYTHON)
    assert "not the Python" in other


def test_a_clock_before_the_build_date_fails(signed_package: Path) -> None:
    tree = verify_tree(signed_package)
    early = quiet(clock=lambda: BUILT - timedelta(days=400))
    sentence = failed(check_clock(early, tree), at.CLOCK)
    assert "before the tool was built (2026-03-01T12:00:00Z, from the signed manifest)" \
        in sentence
    late = check_clock(quiet(clock=lambda: BUILT + timedelta(seconds=1)), tree)
    assert late.result == "pass"


def test_clock_without_a_manifest_uses_the_package_files(tmp_path: Path) -> None:
    bare = copy_package(tmp_path)
    os.utime(bare / "attest.py", (BUILT.timestamp(), BUILT.timestamp()))
    for path in bare.rglob("*"):
        if path != bare / "attest.py" and path.is_file():
            os.utime(path, (0, 0))
    env = quiet(package_dir=bare, clock=lambda: BUILT - timedelta(hours=1))
    assert "from the package files' times" in failed(check_clock(env, verify_tree(bare)),
                                                     at.CLOCK)


# ------------------------------------------------------------------ the live image


def fake_iso(path: Path, blocks: int, trailing: bytes = b"") -> bytes:
    """An ISO 9660 primary volume descriptor naming ``blocks`` sectors, and some bytes after."""
    pvd = bytearray(2048)
    pvd[0:7] = b"\x01CD001\x01"
    pvd[80:84] = blocks.to_bytes(4, "little")
    pvd[84:88] = blocks.to_bytes(4, "big")
    pvd[128:130] = (2048).to_bytes(2, "little")
    pvd[130:132] = (2048).to_bytes(2, "big")
    body = bytes(16 * 2048) + bytes(pvd)
    body += bytes((i * 7) % 251 for i in range(blocks * 2048 - len(body)))
    path.write_bytes(body + trailing)
    return body


def test_not_a_live_image(tmp_path: Path) -> None:
    result = check_image(quiet(image_file=tmp_path / "ceremony-image"))
    assert "not a live image" in failed(result, at.IMAGE)
    assert result.state == "not-live"


def test_live_medium_digest_and_expected_digest(tmp_path: Path) -> None:
    image = tmp_path / "etc" / "ceremony-image"
    write(image, json.dumps({"name": "ceremony-live", "version": "0.1.0", "suite": "bookworm",
                             "snapshot": "20261101T000000Z", "source_date_epoch": 1}))
    stick = tmp_path / "sdb"
    iso = fake_iso(stick, blocks=40, trailing=b"rest of a larger USB stick" * 100)
    write(tmp_path / "proc" / "mounts", f"{stick} /run/live/medium iso9660 ro 0 0\n")
    env = quiet(image_file=image, proc_root=tmp_path / "proc")
    result = check_image(env)
    digest = hashlib.sha256(iso).hexdigest()
    assert result.result == "pass", result
    assert result.facts["sha256"] == digest and result.facts["size"] == len(iso)
    assert result.facts["image"]["snapshot"] == "20261101T000000Z"
    assert iso_digest(stick) == (digest, len(iso))
    assert check_image(replace(env, image_sha256=digest)).result == "pass"
    sentence = failed(check_image(replace(env, image_sha256="0" * 64)), at.IMAGE)
    assert f"has SHA-256 {digest}, not the image digest {'0' * 64}" in sentence
    write(tmp_path / "proc" / "mounts", "tmpfs /run tmpfs rw 0 0\n")
    assert "not mounted at /run/live/medium" in failed(check_image(env), at.IMAGE)
    stick.write_bytes(bytes(64 * 2048))
    write(tmp_path / "proc" / "mounts", f"{stick} /run/live/medium iso9660 ro 0 0\n")
    assert "no ISO 9660 image" in failed(check_image(env), at.IMAGE)


# ------------------------------------------------------------------ waivers and the gate


def passing() -> list[CheckResult]:
    return [CheckResult(cid, "pass", f"{name} is fine") for cid, name in at.CHECKS.items()]


def with_failure(cid: str, state: str = "") -> list[CheckResult]:
    return [CheckResult(r.id, "fail", "it failed for a reason", "fix it", {}, state)
            if r.id == cid else r for r in passing()]


def test_a_passing_record_allows_provisioning() -> None:
    record = attestation_record(passing(), rehearsal=False)
    require_attested(record, policy(), rehearsal=False)
    assert record["passed"] and record["waived"] == []
    assert json.loads(canonical_bytes(record)) == record  # fits the transcript's encoding


@pytest.mark.parametrize("cid", list(at.CHECKS))
def test_provisioning_refused_for_each_failed_check(cid: str) -> None:
    record = attestation_record(with_failure(cid), rehearsal=False)
    assert not record["passed"]
    with pytest.raises(AttestationError) as caught:
        require_attested(record, policy(), rehearsal=False)
    assert caught.value.requirement == cid
    assert caught.value.message.startswith("secret provisioning refused: ")
    assert "it failed for a reason" in caught.value.message
    assert caught.value.kind.value == 1


def test_provisioning_refused_from_real_checks(tmp_path: Path) -> None:
    """The whole path: checks on a constructed machine, the record, then the gate."""
    sysfs = tmp_path / "sys"
    write(sysfs / "class" / "net" / "eth0" / "type", "1\n")
    write(sysfs / "class" / "net" / "eth0" / "flags", "0x1003\n")
    env = quiet(sys_root=sysfs, proc_root=tmp_path / "proc", image_file=tmp_path / "none",
                module=sys.executable)
    results = apply_waivers(run_checks(env), policy(), rehearsal=False)
    with pytest.raises(AttestationError) as caught:
        require_attested(attestation_record(results, rehearsal=False), policy(),
                         rehearsal=False)
    assert caught.value.requirement == at.NET and "eth0 is up" in caught.value.message
    rehearsed = apply_waivers(run_checks(env), policy(), rehearsal=True)
    require_attested(attestation_record(rehearsed, rehearsal=True), policy(), rehearsal=True)


def test_attestation_for_gives_the_engine_its_record(tmp_path: Path) -> None:
    """What the CLI will pass to Engine.start: the record, with the policy's module pins."""
    module = tmp_path / "module.so"
    module.write_bytes(b"vendor module")
    digest = hashlib.sha256(module.read_bytes()).hexdigest()
    sysfs = tmp_path / "sys"
    write(sysfs / "class" / "net" / "eth0" / "type", "1\n")
    write(sysfs / "class" / "net" / "eth0" / "flags", "0x1003\n")
    env = quiet(sys_root=sysfs, proc_root=tmp_path / "proc", image_file=tmp_path / "none")
    pinned = policy(f'\n[attestation]\nmodule_sha256 = ["{digest}"]\n')
    record = attestation_for(pinned, rehearsal=True, module=str(module), env=env)
    checks = {c["id"]: c for c in record["checks"]}
    assert list(checks) == list(at.CHECKS) and record["passed"]
    assert checks[at.NET]["waived_by"] == "rehearsal"
    assert checks[at.MODULE]["facts"] == {"module": str(module), "sha256": digest,
                                          "pinned": [digest]}
    require_attested(record, pinned, rehearsal=True)
    other = policy('\n[attestation]\nmodule_sha256 = ["' + "0" * 64 + '"]\n')
    refused = attestation_for(other, rehearsal=True, module=str(module), env=env)
    with pytest.raises(AttestationError) as caught:
        require_attested(refused, other, rehearsal=True)
    assert caught.value.requirement == at.MODULE


def test_rehearsal_waivers_stay_in_rehearsals() -> None:
    results = apply_waivers(with_failure(at.NET), policy(), rehearsal=True)
    record = attestation_record(results, rehearsal=True)
    assert record["waived"] == [at.NET] and record["passed"]
    require_attested(record, policy(), rehearsal=True)
    with pytest.raises(AttestationError, match="made for a rehearsal"):
        require_attested(record, policy(), rehearsal=False)
    forged = {**record, "rehearsal": False}
    with pytest.raises(AttestationError, match="waived as for a rehearsal") as caught:
        require_attested(forged, policy(), rehearsal=False)
    assert caught.value.requirement == at.NET


def test_rehearsal_does_not_waive_a_modified_tool_or_a_wrong_module() -> None:
    for cid, state in ((at.TOOL, "mismatch"), (at.MODULE, ""), (at.CLOCK, "")):
        results = apply_waivers(with_failure(cid, state), policy(), rehearsal=True)
        with pytest.raises(AttestationError) as caught:
            require_attested(attestation_record(results, rehearsal=True), policy(),
                             rehearsal=True)
        assert caught.value.requirement == cid
    unsigned = apply_waivers(with_failure(at.TOOL, at.TOOL_UNSIGNED), policy(), rehearsal=True)
    require_attested(attestation_record(unsigned, rehearsal=True), policy(), rehearsal=True)
    with pytest.raises(AttestationError):
        require_attested(attestation_record(
            apply_waivers(with_failure(at.TOOL, at.TOOL_UNSIGNED), policy(), rehearsal=False),
            rehearsal=False), policy(), rehearsal=False)


WAIVING = "\n[attestation]\nwaivable = [\"CER-ATTEST-MEDIA\", \"CER-ATTEST-IMAGE\"]\n" \
          "waiver_quorum = 3\n"


def test_policy_waiver_needs_the_policy_and_its_quorum() -> None:
    p = policy(WAIVING)
    waiver = Waiver(at.MEDIA, ("alice", "bob", "carol"), "the bundle stick is write-blocked")
    results = apply_waivers(with_failure(at.MEDIA), p, rehearsal=False, waivers=[waiver])
    record = attestation_record(results, rehearsal=False)
    media = next(c for c in record["checks"] if c["id"] == at.MEDIA)
    assert media["result"] == "waived" and media["approved_by"] == ["alice", "bob", "carol"]
    assert record["waived"] == [at.MEDIA]
    require_attested(record, p, rehearsal=False)
    with pytest.raises(AttestationError, match="does not allow waiving"):
        require_attested(record, policy(), rehearsal=False)  # a policy that lists nothing
    short = Waiver(at.MEDIA, ("alice", "bob", "alice"), "two people")
    with pytest.raises(QuorumError, match="needs 3 approvals by policy, not 2"):
        apply_waivers(with_failure(at.MEDIA), p, rehearsal=False, waivers=[short])
    with pytest.raises(AttestationError, match="does not allow waiving CER-ATTEST-NET"):
        apply_waivers(with_failure(at.NET), p, rehearsal=False,
                      waivers=[Waiver(at.NET, ("alice", "bob", "carol"), "x")])
    with pytest.raises(AttestationError, match="does not allow waiving"):
        apply_waivers(with_failure(at.MEDIA), None, rehearsal=False, waivers=[waiver])
    forged = json.loads(json.dumps(record))
    next(c for c in forged["checks"] if c["id"] == at.MEDIA)["approved_by"] = ["alice"]
    with pytest.raises(AttestationError, match="has 1 approvals, the policy needs 3"):
        require_attested(forged, p, rehearsal=False)


@pytest.mark.parametrize("mangle", ["none", "empty", "format", "missing", "repeated",
                                    "unknown", "no-result", "no-waiver-source"])
def test_require_attested_fails_closed(mangle: str) -> None:
    record: dict[str, Any] | None = attestation_record(passing(), rehearsal=False)
    assert record is not None
    checks = record["checks"]
    if mangle == "none":
        record = None
    elif mangle == "empty":
        record["checks"] = []
    elif mangle == "format":
        record["format"] = "ceremony-attestation/0"
    elif mangle == "missing":
        del checks[3]
    elif mangle == "repeated":
        checks.append(checks[0])
    elif mangle == "unknown":
        checks[0] = {**checks[0], "id": "CER-ATTEST-VIBES"}
    elif mangle == "no-result":
        checks[0] = {**checks[0], "result": "ok"}
    else:
        checks[0] = {**checks[0], "result": "waived"}
    with pytest.raises(AttestationError, match="secret provisioning refused"):
        require_attested(record, policy(), rehearsal=False)


@pytest.mark.parametrize(("table", "message"), [
    ('waivable = ["CER-ATTEST-WIFI"]', "'CER-ATTEST-WIFI' is not an attestation check"),
    ('waivable = ["CER-ATTEST-TOOL"]', "can never be waived"),
    ("waiver_quorum = 1", "1 is below quorum.min_approvals (2)"),
    ('module_sha256 = ["ABC"]', "is not a lower-case hex SHA-256"),
    ("waivable = true", "must be an array"),
    ("colour = 1", "is not a known field"),
])
def test_attestation_table_is_strict(table: str, message: str) -> None:
    text = sample_texts()[1] + f"\n[attestation]\n{table}\n"
    with pytest.raises(PolicyFileError) as caught:
        parse_policy(text, "policy.toml")
    assert message in caught.value.message
    line = len(text.splitlines())
    assert f"policy.toml:{line}: attestation." in caught.value.message


@pytest.mark.parametrize("args", [["attest", "--module-sha256", "xyz"],
                                  ["attest", "--image-sha256", "ab" * 31],
                                  ["attest", "--manifest", "/nonexistent/MANIFEST.json"],
                                  ["selftest", "--manifest", "/nonexistent/MANIFEST.json"]])
def test_bad_usage_exits_2_with_one_sentence(args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "ceremony.cli.main", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("ceremony: ") and "hint:" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
