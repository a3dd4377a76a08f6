"""External sources of ``ingest`` tasks: presigning ``s3://`` objects (the API) and the SSRF
guard for user-supplied http(s) URLs (:mod:`.ssrf`, used in task processes)."""
