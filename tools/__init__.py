"""Tools around the service, above the parts: embedded PostgreSQL and Mosquitto for a
machine with none configured, the simulated fleet, and the benchmark."""
