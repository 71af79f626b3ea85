#!/bin/sh
# Run by ceremony-autotest.service when the kernel command line holds ceremony.autotest:
# every result goes to the serial console as a CEREMONY-AUTOTEST line that
# iso-build/boot-test.sh reads, then the machine powers off.
export LANG=C.UTF-8 HOME=/root
cd /tmp || exit 1
mark() { echo "CEREMONY-AUTOTEST $*"; }
mark "start $(date -u +%Y-%m-%dT%H:%M:%SZ) image $(tr -d '\n' < /etc/ceremony-image)"
start=$(date +%s)
ceremony selftest; mark "selftest rc=$?"
ceremony attest; mark "attest rc=$?"
ceremony rehearse --out /tmp/rehearsal; mark "rehearse rc=$?"
ceremony verify /tmp/rehearsal/bundle > /dev/null; mark "verify rc=$?"
mark "done in $(( $(date +%s) - start )) s"
systemctl poweroff
