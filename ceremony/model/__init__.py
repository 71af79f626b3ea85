"""Frozen data model: scripts, policies, answers and transcript entries, strictly parsed."""
