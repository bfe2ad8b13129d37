"""Throughput of pqueue beside its predecessor, its peers and the raw disk, in one run: the
full run of ``pqueue.bench`` (``pqueue bench`` runs a short one). See benchmarks/README.md."""

from pqueue.bench import main

if __name__ == "__main__":
    main()
