"""Shared infrastructure for every Armillary service: nothing domain-specific lives here."""
