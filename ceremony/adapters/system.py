"""The real clock and the operating system's randomness."""

from __future__ import annotations

import os
from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class OsRandomness:
    def random_bytes(self, n: int) -> bytes:
        return os.urandom(n)
