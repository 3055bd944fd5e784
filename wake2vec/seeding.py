"""Seeds derived from text: the same text gives the same seed on every machine and in every
process (Python's ``hash`` is salted per process), so a resumed run draws what it drew before."""

from __future__ import annotations

import hashlib


def derived_seed(text: str) -> int:
    """A 63-bit seed from ``text`` (for ``torch.Generator.manual_seed``; take it modulo 2**32
    where numpy's seeding is involved)."""
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
