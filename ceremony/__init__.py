"""ceremony: scripted root-key ceremonies for air-gapped workstations."""

__version__ = "0.1.0"
