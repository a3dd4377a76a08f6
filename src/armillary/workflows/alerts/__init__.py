"""Alerts: notification channels, rules over job and task events, and their deliveries."""
