"""The serving service: deployments, variants, routing, predictions, feedback and A/B analysis."""
