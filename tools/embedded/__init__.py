"""Embedded PostgreSQL and MQTT broker for the two-command start and for fault tests."""
