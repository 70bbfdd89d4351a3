"""FHIR R4 under ``/fhir``: Patient, vital-signs Observations, Device and Flag, read with
the API's tokens, access decisions and audit (docs/fhir.md)."""
