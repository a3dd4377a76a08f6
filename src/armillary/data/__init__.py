"""The data service: datasets, their immutable versions in object storage, profiles."""
