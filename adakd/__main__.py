"""`python -m adakd ...`: the command line (see adakd/cli.py)."""

import sys

from adakd.cli import main

if __name__ == "__main__":
    sys.exit(main())
