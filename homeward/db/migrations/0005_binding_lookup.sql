-- A btree for resolving a device's binding at a reading's time during ingest: an order of
-- magnitude cheaper per row than probing the exclusion constraint's GiST index.
-- depends: 0004_alerts

CREATE INDEX device_bindings_device ON device_bindings (device_id, valid_from);
