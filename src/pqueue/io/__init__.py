"""The IO shell: the file-system boundary, the directory lock and the effect runner."""

from pqueue.io.fs import FileSystem as FileSystem
from pqueue.io.fs import Lock as Lock
from pqueue.io.fs import OsFileSystem as OsFileSystem

__all__ = ["FileSystem", "Lock", "OsFileSystem"]
