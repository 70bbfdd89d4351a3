"""Homeward: remote-monitoring backend for integrated community care.

The ``homeward`` package is the small shared kernel: configuration, domain types,
the metric catalogue, database access and migrations, embedded services and the CLI.
The parts live beside it: ``devices`` (codecs, registry, simulator), ``ingest``
(MQTT consumer, quarantine, writer), ``alerts`` (rules, lifecycle, escalation) and
``api`` (HTTP).
"""

__version__ = "0.1.0"
