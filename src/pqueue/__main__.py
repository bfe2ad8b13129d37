"""``python -m pqueue``: the command line (``demo``)."""

import sys

from pqueue.demo import main

if __name__ == "__main__":
    sys.exit(main())
