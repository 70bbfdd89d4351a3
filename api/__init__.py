"""HTTP API (aiohttp): health now; queues, thresholds, patient view and FHIR to come."""
