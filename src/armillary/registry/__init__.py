"""The model registry: registered models, their versions, lineage and aliases."""
