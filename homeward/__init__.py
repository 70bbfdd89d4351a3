"""Homeward: remote-monitoring backend for integrated community care.

The ``homeward`` package is the shared kernel: settings, domain types, the metric
catalogue, NHS numbers, errors, database access and migrations, the MQTT client, metrics
and the heap settings. It imports none of the parts. Above it, one way only:
``devices`` → ``ingest`` and ``alerts`` → ``api`` → ``service`` (the wiring) and
``tools`` (embedded services, simulator, benchmark) → ``commands`` (the CLI).
``make lint`` enforces the order (import-linter); docs/architecture.md draws it.
"""

__version__ = "0.1.0"
