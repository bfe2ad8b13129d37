"""``python -m pqueue``: the command line (``pqueue.cli``)."""

import sys

from pqueue.cli import main

if __name__ == "__main__":
    sys.exit(main())
