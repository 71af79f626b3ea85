"""A virtual OpenPGP card (OpenPGP smart card application 3.4) for the PC/SC tests.

``card.OpenPgpCard`` answers command APDUs the way a real custodian card does (YubiKey,
Nitrokey, Gnuk), for the part of the specification our adapter uses; ``vpcd`` plugs it into
vsmartcard's virtual reader driver, so pcscd and pyscard talk to it exactly as to a USB
card. Run it with ``python -m tests.vcard --state FILE``. It lives under tests/ because it
keeps its private key in a plain file: it must never ship (docs/adr/0009-virtual-openpgp-card.md).
"""
