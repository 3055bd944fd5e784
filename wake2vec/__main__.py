"""Allow ``python -m wake2vec``."""

from __future__ import annotations

from wake2vec.cli import main

if __name__ == "__main__":
    main()
