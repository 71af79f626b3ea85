"""`ceremony attest`: is this machine fit to hold a secret? One small function per check.

Each check reads the machine (``/sys``, ``/proc``, the tool's own files, the live medium,
the PKCS#11 module, the interpreter, the clock) and returns a
:class:`~ceremony.model.attestation.CheckResult` with its requirement id, pass or fail,
one plain sentence and the public facts it saw. Where the machine is read from is an
:class:`Environment`, so tests point the checks at constructed trees (or run them inside
a network namespace). Waivers, the record and the gate before provisioning are in
``ceremony/model/attestation.py``; docs/workstation-guide.md says what to do when a check
fails.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ceremony.manifest import PACKAGE_DIR, TreeReport, file_sha256, package_files, verify_tree
from ceremony.model.attestation import (
    CHECKS,
    CLOCK,
    IMAGE,
    MEDIA,
    MODULE,
    NET,
    PYTHON,
    RADIO,
    ROUTE,
    TOOL,
    TOOL_UNSIGNED,
    CheckResult,
    Waiver,
    apply_waivers,
    attestation_record,
)

if TYPE_CHECKING:
    from ceremony.model.policy import Policy

IFF_UP = 0x1
ARPHRD_LOOPBACK = 772
RTF_REJECT = 0x0200
SIOCGIFADDR = 0x8915
MIN_PYTHON = (3, 11)
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
# Written by iso-build/build.sh into the image: which image this root file system is.
IMAGE_FILE = Path("/etc/ceremony-image")
# Where Debian's live-boot mounts the medium it booted from.
LIVE_MEDIUM = "/run/live/medium"
ISO_PVD_OFFSET = 16 * 2048  # ISO 9660: the primary volume descriptor is sector 16

Addresses = Mapping[str, Sequence[str]]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Environment:
    """Where the checks look, and what they compare with. Defaults: this machine."""

    sys_root: Path = Path("/sys")
    proc_root: Path = Path("/proc")
    image_file: Path = IMAGE_FILE
    medium_mount: str = LIVE_MEDIUM
    package_dir: Path = PACKAGE_DIR
    manifest: Path | None = None  # default: PACKAGE_DIR/MANIFEST.json
    release_keys: Path | None = None  # default: PACKAGE_DIR/data/release-key.pub
    module: str | None = None  # default: $CEREMONY_PKCS11_MODULE or SoftHSM2's
    module_sha256: tuple[str, ...] = ()  # digests the script or the policy pins
    image_sha256: str | None = None  # the image digest read aloud before the day
    clock: Callable[[], datetime] = _now
    python: tuple[int, int, int] = field(
        default_factory=lambda: (sys.version_info[0], sys.version_info[1], sys.version_info[2]))
    # Interface name -> its addresses; None reads them from the kernel (`ip -j addr`).
    addresses: Callable[[], Addresses] | None = None


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace").strip()


def _result(cid: str, ok: bool, sentence: str, hint: str = "", state: str = "", /,
            **facts: Any) -> CheckResult:
    return CheckResult(cid, "pass" if ok else "fail", sentence, hint, facts, state)


def _names(items: Sequence[str]) -> str:
    return ", ".join(items) if len(items) < 3 else ", ".join(items[:-1]) + " and " + items[-1]


# ------------------------------------------------------------------ network


def system_addresses() -> Addresses:
    """Addresses of every interface, from `ip -j addr` or, without iproute2, the kernel."""
    ip = shutil.which("ip")
    if ip:
        done = subprocess.run([ip, "-j", "addr", "show"], capture_output=True, text=True,
                              check=False, timeout=10)
        if done.returncode == 0 and done.stdout.strip():
            return {link["ifname"]: [f"{a['local']}/{a['prefixlen']}"
                                     for a in link.get("addr_info", []) if "local" in a]
                    for link in json.loads(done.stdout)}
    return _kernel_addresses()


def _kernel_addresses() -> Addresses:
    out: dict[str, list[str]] = {}
    try:  # IPv6: one line per address
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            hexaddr, _, plen, _, _, name = line.split()
            text = socket.inet_ntop(socket.AF_INET6, bytes.fromhex(hexaddr))
            out.setdefault(name, []).append(f"{text}/{int(plen, 16)}")
    except OSError:
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for name in sorted(os.listdir("/sys/class/net")):
            try:
                raw = fcntl.ioctl(sock.fileno(), SIOCGIFADDR,
                                  struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue  # no IPv4 address
            out.setdefault(name, []).append(socket.inet_ntoa(raw[20:24]))
    return out


def check_network(env: Environment) -> CheckResult:
    """CER-ATTEST-NET: no interface but loopback is up or has an address."""
    net = env.sys_root / "class" / "net"
    if not net.is_dir():  # fail closed: an interface we cannot see may still be there
        return _result(NET, False, f"the network interfaces cannot be listed ({net} is "
                       "missing)", "attest on the workstation itself, with /sys mounted")
    names = sorted(os.listdir(net))
    others = [n for n in names if _int(net / n / "type", 10) != ARPHRD_LOOPBACK]
    addresses = (env.addresses or system_addresses)()
    problems: list[str] = []
    seen: dict[str, Any] = {}
    for name in others:
        up = bool(_int(net / name / "flags", 16) & IFF_UP)
        state = _read(net / name / "operstate") if (net / name / "operstate").exists() else ""
        addrs = list(addresses.get(name, ()))
        seen[name] = {"up": up, "operstate": state, "addresses": addrs}
        if up and addrs:
            problems.append(f"{name} is up with address {_names(addrs)}")
        elif up:
            problems.append(f"{name} is up")
        elif addrs:
            problems.append(f"{name} has address {_names(addrs)}")
    if problems:
        return _result(NET, False, f"network interface {'; '.join(problems)}: the workstation "
                       "must have no network", "unplug or remove the network hardware (or "
                       "boot the ceremony image, which has no network drivers), then attest "
                       "again", interfaces=seen)
    present = f" ({_names(others)} present but down and without an address)" if others else ""
    return _result(NET, True, f"no network interface but loopback is up or configured{present}",
                   interfaces=seen)


def _int(path: Path, base: int) -> int:
    try:
        return int(_read(path), base)
    except (OSError, ValueError):
        return 0


def _ipv4(hexle: str) -> str:
    return socket.inet_ntoa(struct.pack("<I", int(hexle, 16)))


def check_routes(env: Environment) -> CheckResult:
    """CER-ATTEST-ROUTE: no IPv4 or IPv6 default route."""
    found: list[str] = []
    v4 = env.proc_root / "net" / "route"
    if not v4.is_file():
        return _result(ROUTE, False, f"the routing table cannot be read ({v4} is missing)",
                       "attest on the workstation itself, with /proc mounted")
    for line in v4.read_text().splitlines()[1:]:
        f = line.split()
        if len(f) >= 8 and f[1] == "00000000" and f[7] == "00000000":
            found.append(f"IPv4 via {_ipv4(f[2])} on {f[0]}")
    v6 = env.proc_root / "net" / "ipv6_route"
    if v6.is_file():
        for line in v6.read_text().splitlines():
            f = line.split()
            if len(f) >= 10 and f[0] == "0" * 32 and f[1] == "00" \
                    and not int(f[8], 16) & RTF_REJECT and f[9] != "lo":
                gateway = socket.inet_ntop(socket.AF_INET6, bytes.fromhex(f[4]))
                found.append(f"IPv6 via {gateway} on {f[9]}")
    if found:
        return _result(ROUTE, False, f"there is a default route ({'; '.join(found)}): "
                       "the workstation could reach another network", "remove the network "
                       "hardware or the route, then attest again", routes=found)
    return _result(ROUTE, True, "there is no default route", routes=[])


# ------------------------------------------------------------------ radios, media


def check_radio(env: Environment) -> CheckResult:
    """CER-ATTEST-RADIO: every wireless and Bluetooth radio is blocked (rfkill), or absent."""
    rfkill = env.sys_root / "class" / "rfkill"
    switches = []
    for dev in sorted(rfkill.iterdir()) if rfkill.is_dir() else []:
        soft, hard = _read(dev / "soft"), _read(dev / "hard")
        switches.append({"device": dev.name, "type": _read(dev / "type"),
                         "name": _read(dev / "name"), "blocked": soft == "1" or hard == "1"})
    net = env.sys_root / "class" / "net"
    wireless = sorted(n for n in (os.listdir(net) if net.is_dir() else [])
                      if (net / n / "wireless").exists() or (net / n / "phy80211").exists())
    bt = env.sys_root / "class" / "bluetooth"
    adapters = sorted(os.listdir(bt)) if bt.is_dir() else []
    facts = {"rfkill": switches, "wireless_interfaces": wireless, "bluetooth": adapters}
    open_ = [f"{s['type']} radio {s['name']} ({s['device']})" for s in switches
             if not s["blocked"]]
    if open_:
        return _result(RADIO, False, f"the {_names(open_)} is not blocked: a radio could "
                       "connect the workstation", "switch the radio off (hardware switch, "
                       "`rfkill block all`) or remove it, then attest again", **facts)
    if (wireless or adapters) and not switches:
        return _result(RADIO, False, f"there are radios ({_names(wireless + adapters)}) "
                       "with no rfkill switch to show they are off", "remove the wireless "
                       "and Bluetooth hardware, then attest again", **facts)
    if switches:
        return _result(RADIO, True, f"every radio is blocked ({len(switches)} rfkill "
                       "switches)", **facts)
    return _result(RADIO, True, "there is no wireless or Bluetooth device", **facts)


def _unescape(field_: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as octal escapes.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field_ = field_.replace(code, char)
    return field_


def _mounts(env: Environment) -> list[tuple[str, str, str, list[str]]]:
    path = env.proc_root / "mounts"
    out = []
    for line in path.read_text().splitlines():  # missing: OSError, the check fails
        f = line.split()
        if len(f) >= 4:
            out.append((_unescape(f[0]), _unescape(f[1]), f[2], f[3].split(",")))
    return out


def check_media(env: Environment) -> CheckResult:
    """CER-ATTEST-MEDIA: no removable (or USB) block device is mounted writable."""
    writable = []
    for device, mountpoint, fstype, options in _mounts(env):
        if not device.startswith("/dev/") or "rw" not in options:
            continue
        block = env.sys_root / "class" / "block" / Path(device).name
        if not block.exists():
            continue
        real = block.resolve()
        disk = real.parent if (real / "partition").exists() else real
        removable = _read(disk / "removable") == "1" if (disk / "removable").exists() else False
        if removable or "/usb" in real.as_posix():
            writable.append({"device": device, "mountpoint": mountpoint, "fstype": fstype})
    if writable:
        listed = _names([f"{w['device']} on {w['mountpoint']}" for w in writable])
        return _result(MEDIA, False, f"removable media is mounted writable ({listed}): "
                       "nothing may be written off the machine before the ceremony",
                       "unmount it (or remount it read-only) and attest again; mount the "
                       "bundle's medium only after the seal", mounts=writable)
    return _result(MEDIA, True, "no removable medium is mounted writable", mounts=[])


# ------------------------------------------------------------------ tool, image, module


def check_tool(env: Environment, tree: TreeReport) -> CheckResult:
    """CER-ATTEST-TOOL: the installed files match the signed manifest, by name."""
    facts = {"package": str(tree.package_dir), "version": tree.version, "files": tree.files,
             "release_key": tree.key, "modified": list(tree.modified),
             "missing": list(tree.missing), "unexpected": list(tree.unexpected)}
    hint = {"unsigned": "install a release (its package carries MANIFEST.json), or boot the "
                        "ceremony image",
            "mismatch": "do not use this installation: boot a verified ceremony image"}.get(
        tree.state, "reinstall the release, or boot a verified ceremony image")
    return _result(TOOL, tree.ok, tree.sentence, "" if tree.ok else hint,
                   TOOL_UNSIGNED if tree.state == "unsigned" else tree.state, **facts)


def iso_digest(device: Path) -> tuple[str, int]:
    """SHA-256 and size of the ISO 9660 image at the start of ``device`` (a CD or a stick).

    The primary volume descriptor gives the image's size, so bytes after it on a larger USB
    stick are not hashed: the digest equals that of the .iso file that was written.
    """
    with device.open("rb") as stream:
        stream.seek(ISO_PVD_OFFSET)
        pvd = stream.read(2048)
        if len(pvd) < 2048 or pvd[0] != 1 or pvd[1:6] != b"CD001":
            raise ValueError("it holds no ISO 9660 image")
        size = int.from_bytes(pvd[80:84], "little") * int.from_bytes(pvd[128:130], "little")
        stream.seek(0)
        digest, left = hashlib.sha256(), size
        while left > 0:
            block = stream.read(min(left, 1 << 20))
            if not block:
                raise ValueError(f"it ends before the {size} bytes its ISO 9660 header names")
            digest.update(block)
            left -= len(block)
    return digest.hexdigest(), size


def check_image(env: Environment) -> CheckResult:
    """CER-ATTEST-IMAGE: booted from the ceremony live image; the medium's digest."""
    if not env.image_file.is_file():
        return _result(IMAGE, False, f"this machine was not booted from the ceremony live "
                       f"image ({env.image_file} is absent): not a live image",
                       "boot the verified ceremony image (docs/workstation-guide.md)",
                       "not-live", live=False)
    try:
        info = json.loads(env.image_file.read_text())
    except ValueError:
        info = {}
    if not isinstance(info, dict):
        info = {}
    image = {k: info[k] for k in ("name", "version", "suite", "snapshot", "source_date_epoch",
                                  "release_key", "official")
             if isinstance(info.get(k), (str, int, bool))}
    device = next((d for d, m, _, _ in _mounts(env) if m == env.medium_mount), None)
    if device is None:
        return _result(IMAGE, False, f"the ceremony image's live medium is not mounted at "
                       f"{env.medium_mount}, so its digest cannot be checked", "boot from the "
                       "ceremony image's medium (not a copy of its files)", "no-medium",
                       live=True, image=image)
    try:
        digest, size = iso_digest(Path(device))
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return _result(IMAGE, False, f"the live medium {device} cannot be hashed ({reason})",
                       "boot from the ceremony image written unchanged to a CD or stick",
                       "unreadable", live=True, image=image, medium=device)
    from ceremony.display import words

    facts = {"live": True, "image": image, "medium": device, "size": size, "sha256": digest,
             "words": words(digest)}
    if env.image_sha256 and env.image_sha256.lower() != digest:
        return _result(IMAGE, False, f"the live medium {device} has SHA-256 {digest}, not "
                       f"the image digest {env.image_sha256.lower()} that was read aloud",
                       "stop: boot from a medium written from the verified image",
                       "mismatch", expected=env.image_sha256.lower(), **facts)
    compared = " (the expected digest)" if env.image_sha256 else (
        ": compare its words with the ones read aloud before the day")
    unofficial = " (an unofficial build, with its own release key)" \
        if image.get("official") is False else ""
    return _result(IMAGE, True, f"booted from ceremony image {image.get('version', '?')}"
                   f"{unofficial}; the medium's SHA-256 is {digest[:16]}... ({words(digest)})"
                   f"{compared}", **facts)


def module_path(env: Environment) -> str:
    return env.module or os.environ.get("CEREMONY_PKCS11_MODULE") or SOFTHSM_MODULE


def check_module(env: Environment) -> CheckResult:
    """CER-ATTEST-MODULE: the PKCS#11 module's SHA-256, against the pinned ones if any."""
    path = module_path(env)
    pinned = sorted({d.lower() for d in env.module_sha256})
    if not Path(path).is_file():
        return _result(MODULE, False, f"the PKCS#11 module {path} does not exist",
                       "install the token's PKCS#11 module or pass --module", module=path,
                       pinned=pinned)
    digest = file_sha256(Path(path))
    if pinned and digest not in pinned:
        return _result(MODULE, False, f"the PKCS#11 module {path} has SHA-256 {digest}, "
                       f"which is not a pinned digest ({_names(pinned)})", "use the module "
                       "the script and policy approved (check the vendor's release)",
                       module=path, sha256=digest, pinned=pinned)
    how = "a pinned digest" if pinned else "not pinned, recorded"
    return _result(MODULE, True, f"the PKCS#11 module {path} has SHA-256 {digest[:16]}... "
                   f"({how})", module=path, sha256=digest, pinned=pinned)


# ------------------------------------------------------------------ python, clock


def check_python(env: Environment, tree: TreeReport) -> CheckResult:
    """CER-ATTEST-PYTHON: a supported interpreter, the one the release was built for."""
    version = ".".join(map(str, env.python))
    minor = f"{env.python[0]}.{env.python[1]}"
    facts = {"version": version, "implementation": sys.implementation.name,
             "executable": sys.executable, "release_python": list(tree.python)}
    if env.python[:2] < MIN_PYTHON:
        return _result(PYTHON, False, f"Python {version} is older than the "
                       f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} the tool needs", "boot the ceremony "
                       "image, which carries the right interpreter", **facts)
    if tree.python and minor not in tree.python:
        return _result(PYTHON, False, f"Python {version} is not the Python "
                       f"{_names(list(tree.python))} this release was built and tested for",
                       "boot the ceremony image, which carries the right interpreter",
                       **facts)
    return _result(PYTHON, True, f"Python {version} ({sys.implementation.name})", **facts)


def build_date(env: Environment, tree: TreeReport) -> tuple[datetime, str]:
    """The tool's build date: the signed manifest's, else the newest package file's time."""
    if tree.ok and tree.built is not None:
        return tree.built, "the signed manifest"
    newest = max((p.stat().st_mtime for p in package_files(env.package_dir)), default=0.0)
    return datetime.fromtimestamp(int(newest), UTC), "the package files' times"


def check_clock(env: Environment, tree: TreeReport) -> CheckResult:
    """CER-ATTEST-CLOCK: the clock is not before the tool was built."""
    now, (built, source) = env.clock(), build_date(env, tree)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    facts = {"now": now.astimezone(UTC).strftime(stamp), "built": built.strftime(stamp),
             "built_from": source}
    if now < built:
        return _result(CLOCK, False, f"the clock says {facts['now']}, before the tool was "
                       f"built ({facts['built']}, from {source}): transcript times would be "
                       "wrong", "set the clock to the right UTC time (`date -u -s ...`) and "
                       "attest again", **facts)
    return _result(CLOCK, True, f"the clock ({facts['now']}) is not before the tool's build "
                   f"date ({facts['built']})", **facts)


# ------------------------------------------------------------------ all together


def run_checks(env: Environment | None = None) -> tuple[CheckResult, ...]:
    """Every check, in the order of CHECKS; a check that cannot look fails (fail closed)."""
    env = env or Environment()
    tree = verify_tree(env.package_dir, env.manifest, env.release_keys)
    checks: dict[str, Callable[[], CheckResult]] = {
        NET: lambda: check_network(env),
        ROUTE: lambda: check_routes(env),
        RADIO: lambda: check_radio(env),
        MEDIA: lambda: check_media(env),
        TOOL: lambda: check_tool(env, tree),
        IMAGE: lambda: check_image(env),
        MODULE: lambda: check_module(env),
        PYTHON: lambda: check_python(env, tree),
        CLOCK: lambda: check_clock(env, tree),
    }
    out = []
    for cid in CHECKS:
        try:
            out.append(checks[cid]())
        except (OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
            out.append(_result(cid, False, f"the {CHECKS[cid]} could not be checked "
                               f"({type(exc).__name__}: {exc})", "look at the machine by "
                               "hand and attest again"))
    return tuple(out)


def attestation_for(policy: Policy | None, *, rehearsal: bool, module: str | None = None,
                    waivers: Sequence[Waiver] = (),
                    env: Environment | None = None) -> dict[str, Any]:
    """Attest this machine for a ceremony: every check, the waivers, then the record.

    What the CLI hands the engine for ``ceremony.started`` (the engine then calls
    ``require_attested`` before any secret exists). ``module`` is the PKCS#11 module the
    ceremony will load; the policy's pinned module digests are added to ``env``'s.
    """
    env = env or Environment()
    pinned = env.module_sha256 + (policy.attestation.module_sha256 if policy else ())
    env = replace(env, module=module or env.module, module_sha256=pinned)
    results = apply_waivers(run_checks(env), policy, rehearsal=rehearsal, waivers=waivers)
    return attestation_record(results, rehearsal=rehearsal)


def render(results: Sequence[CheckResult]) -> str:
    """One line per check: result, requirement id, what was found; hints under failures."""
    width = max(len(r.id) for r in results)
    lines = []
    for r in results:
        lines.append(f"[{r.result:<6}] {r.id:<{width}}  {r.name}: {r.sentence}")
        if r.result == "fail" and r.hint:
            lines.append(f"{'':>9}{'':<{width}}  hint: {r.hint}")
    return "\n".join(lines)
