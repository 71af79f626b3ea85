"""Device adapters: the only place python-pkcs11, shamir-mnemonic and friends are imported."""
