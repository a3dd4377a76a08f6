"""Python client of the Armillary API."""
