"""``python -m rewriter``: the same command line as the ``rewriter`` script."""
from __future__ import annotations

from rewriter.cli import console_main

if __name__ == "__main__":
    console_main()
