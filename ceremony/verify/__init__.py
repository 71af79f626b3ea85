"""The auditor's verifier (see ceremony.verify.core for the numbered steps)."""

from ceremony.verify.core import Report, StepResult, verify_bundle

__all__ = ["Report", "StepResult", "verify_bundle"]
