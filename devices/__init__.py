"""Devices: payload codecs, units, registry and bindings, credentials, fleet simulator."""
