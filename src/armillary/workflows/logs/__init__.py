"""Task logs: written by workers in chunks to the object store, read (and followed) over HTTP."""
