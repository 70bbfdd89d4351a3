"""HTTP API (aiohttp): health, the team queue, a patient's readings and alerts, alert
actions, tokens, the audit log and the OpenAPI document (docs/api.md)."""
