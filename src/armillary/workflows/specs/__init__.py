"""Workflow specs: the document model, references, parsing and validation."""
