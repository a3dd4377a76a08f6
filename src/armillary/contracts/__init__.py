"""Schemas shared between services: events and inter-service calls. Nothing else."""
