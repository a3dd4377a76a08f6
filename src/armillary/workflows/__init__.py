"""The workflows service: workflow specs and their immutable versions."""
