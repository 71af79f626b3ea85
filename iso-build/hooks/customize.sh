#!/usr/bin/env bash
# mmdebstrap --customize-hook for the image root file system ($1), run by build.sh with
# SOURCE_DATE_EPOCH, ISO_BUILD (this directory), WHEELS (every wheel to install: the locked
# ones, pyscard's and ceremony's, built in the builder) and IMAGE_INFO (/etc/ceremony-image).
# Everything it does is deterministic: no clock, no randomness, sorted inputs.
set -euo pipefail
ROOT=${1:?rootfs}
in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  LC_ALL=C.UTF-8 SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" PYTHONHASHSEED=0 "$@"; }

echo "customize: the network packages must be absent"
installed=$(in_root dpkg-query -W -f '${Package}\n' | sort)
bad=$(grep -v '^\s*#' "$ISO_BUILD/forbidden-packages.txt" | awk 'NF{print $1}' | sort \
      | comm -12 - <(echo "$installed") || true)
if [ -n "$bad" ]; then
  echo "customize: forbidden packages were resolved into the image: $bad" >&2
  exit 1
fi

echo "customize: overlay files"
(cd "$ISO_BUILD/rootfs" && find . -type f | LC_ALL=C sort) | while read -r f; do
  install -D -m "$(stat -c %a "$ISO_BUILD/rootfs/$f")" "$ISO_BUILD/rootfs/$f" "$ROOT/$f"
done
printf '%s\n' "$IMAGE_INFO" > "$ROOT/etc/ceremony-image"

echo "customize: the tool and its Python dependencies (offline, from the locked wheels)"
mkdir -p "$ROOT/tmp/wheels"
cp "$WHEELS"/*.whl "$ROOT/tmp/wheels/"
in_root python3 -m venv /opt/ceremony/venv
# One sorted list, no index, no dependency resolution: python.lock is the complete set.
in_root sh -c 'cd /tmp/wheels && ls *.whl | LC_ALL=C sort | xargs /opt/ceremony/venv/bin/pip \
  install --no-index --no-deps --no-cache-dir --disable-pip-version-check --quiet'
in_root /opt/ceremony/venv/bin/pip check
rm -rf "$ROOT/tmp/wheels"
ln -sf /opt/ceremony/venv/bin/ceremony "$ROOT/usr/local/bin/ceremony"
echo "customize: the installed tool against its signed manifest"
in_root env PYTHONDONTWRITEBYTECODE=1 /opt/ceremony/venv/bin/ceremony selftest

echo "customize: no network: drivers deleted, services masked, cupsd on its socket only"
for kdir in "$ROOT"/lib/modules/*; do
  kver=$(basename "$kdir")
  for sub in drivers/net net/wireless net/mac80211 net/bluetooth drivers/bluetooth \
             drivers/nfc net/nfc drivers/infiniband net/ieee802154 drivers/net/wireless \
             drivers/firewire/firewire-net.ko drivers/thunderbolt/thunderbolt-net.ko; do
    rm -rf "$kdir/kernel/$sub"
  done
  in_root depmod -a "$kver"
done
for unit in systemd-networkd.service systemd-networkd.socket \
            systemd-networkd-wait-online.service systemd-resolved.service \
            systemd-timesyncd.service wpa_supplicant.service ssh.service; do
  ln -sf /dev/null "$ROOT/etc/systemd/system/$unit"
done
if [ -f "$ROOT/etc/cups/cupsd.conf" ]; then
  sed -i -e '/^Listen .*:631/d' -e '/^Port /d' -e 's/^Browsing .*/Browsing No/' \
    "$ROOT/etc/cups/cupsd.conf"
fi
in_root systemctl enable ceremony-autotest.service
echo "customize: initramfs without the deleted modules"
in_root update-initramfs -u -k all

echo "customize: what would differ between two builds"
# Users' password ages count days since 1970 from the build's clock: use SOURCE_DATE_EPOCH.
days=$(( SOURCE_DATE_EPOCH / 86400 ))
for f in shadow shadow-; do
  [ -f "$ROOT/etc/$f" ] && sed -i -E "s/^([^:]*:[^:]*:)[0-9]+:/\1$days:/" "$ROOT/etc/$f"
done
rm -f "$ROOT"/etc/passwd- "$ROOT"/etc/group- "$ROOT"/etc/shadow- "$ROOT"/etc/gshadow- \
      "$ROOT"/etc/subuid- "$ROOT"/etc/subgid-
rm -rf "$ROOT"/var/log/* "$ROOT"/var/cache/ldconfig/aux-cache "$ROOT"/var/cache/debconf/*-old \
       "$ROOT"/var/lib/dpkg/*-old "$ROOT"/var/lib/systemd/random-seed "$ROOT"/tmp/* \
       "$ROOT"/var/cache/man "$ROOT"/root/.cache
: > "$ROOT/etc/machine-id"
# ssl-cert (a dependency of cupsd) makes a random "snakeoil" key pair at install: not
# reproducible, and no use to a cupsd that listens on its local socket only.
rm -f "$ROOT/etc/ssl/private/ssl-cert-snakeoil.key" "$ROOT/etc/ssl/certs/ssl-cert-snakeoil.pem"
find "$ROOT/etc/ssl/certs" -lname ssl-cert-snakeoil.pem -delete
