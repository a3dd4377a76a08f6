"""Dataset profiling with Polars, run in a child process so the server's memory stays flat."""
