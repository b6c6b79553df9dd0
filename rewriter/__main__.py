"""``python -m rewriter``: the same command line as the ``rewriter`` script."""
from __future__ import annotations

import sys

from rewriter.cli import main

if __name__ == "__main__":
    sys.exit(main())
