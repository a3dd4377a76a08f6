"""The gateway: Envoy, configured from the services' route tables (ADR 0022)."""
