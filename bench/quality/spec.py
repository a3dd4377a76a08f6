"""The benchmark's data and its 12 checks, shared by every contender (standard library only:
imported both by the project's .venv and by the peers' bench/.venvs/quality)."""

from __future__ import annotations

from datetime import datetime, timedelta

SEED = 20_260_527
NOW = datetime(2026, 5, 27, 12, 0, 0)  # the data's "now": created_at is within 30 days of it
MAX_AGE_SECONDS = 90 * 86_400
COUNTRIES = ["PT", "NO", "FR", "AT", "FI", "IE", "DE", "ES", "IT", "NL", "SE", "DK"]
STATUSES = ["new", "paid", "shipped", "refunded"]
EMAIL_DOMAINS = ["example.com", "mail.example.org", "corp.example.net"]
EMAIL_PATTERN = r"[a-z0-9._]+@[a-z0-9.-]+\.[a-z]{2,}"
AGE_MIN, AGE_MAX = 18, 90
AMOUNT_MIN, AMOUNT_MAX = 0.0, 1_000_000.0
SCORE_NULL_SHARE = 0.01
MAX_NULL_RATIO = 0.1
SQL_PREDICATE = "discount <= amount"
SCHEMA = {
    "id": "Int64",
    "user_id": "Int64",
    "age": "Int64",
    "amount": "Float64",
    "discount": "Float64",
    "score": "Float64",
    "country": "String",
    "status": "String",
    "email": "String",
    "created_at": "Datetime",
}

# The 12 checks in Armillary's form; the other contenders spell the same ones their way.
CHECKS = [
    {"type": "schema", "columns": SCHEMA, "exact": True},
    {"type": "not_null", "column": "id"},
    {"type": "unique", "columns": ["id"]},
    {"type": "in_range", "column": "age", "min": AGE_MIN, "max": AGE_MAX},
    {"type": "in_range", "column": "amount", "min": AMOUNT_MIN, "max": AMOUNT_MAX},
    {"type": "in_set", "column": "country", "values": COUNTRIES},
    {"type": "in_set", "column": "status", "values": STATUSES},
    {"type": "regex", "column": "email", "pattern": EMAIL_PATTERN},
    {"type": "row_count", "min": 1},
    {
        "type": "freshness",
        "column": "created_at",
        "max_age_seconds": MAX_AGE_SECONDS,
        "now": NOW.isoformat(),
    },
    {"type": "max_null_ratio", "column": "score", "max_ratio": MAX_NULL_RATIO},
    {"type": "sql", "predicate": SQL_PREDICATE},
]
FRESH_AFTER = NOW - timedelta(seconds=MAX_AGE_SECONDS)
