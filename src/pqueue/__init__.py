"""pqueue: a persistent, crash-safe, disk-backed drop-in for ``queue.Queue``."""
