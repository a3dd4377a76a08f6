"""Workflows of a project and their immutable, content-addressed versions."""
