"""One Alembic environment; each service keeps its migrations in its own version location."""
