"""Holds: a dataset version a registered model version was trained on is kept from deletion."""
