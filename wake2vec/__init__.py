"""wake2vec: teach a causal language model a new vocabulary and measure what that did to it."""

from __future__ import annotations

__version__ = "0.1.0.dev0"

from wake2vec.hookspecs import hookimpl  # noqa: E402  (the marker plugin authors use)

__all__ = ["__version__", "hookimpl"]
