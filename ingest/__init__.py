"""Ingest: MQTT consumer, validation, quarantine, batched idempotent storage, acknowledgement."""
