"""Files a task wrote (its artifacts, data tasks' Parquet tables), read back over HTTP."""
