"""Alerts: rules (NEWS2, thresholds, trends, missed readings), care plans, alert lifecycle."""
