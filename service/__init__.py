"""The running service: wires ingest, the rule stage, the timers and the HTTP API together.

It sits above every part (``devices``, ``ingest``, ``alerts``, ``api``) and below the
command line (``commands``) and the tools (``tools``); see docs/architecture.md.
"""
