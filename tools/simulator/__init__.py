"""The simulated fleet: patients' devices publishing plausible readings (docs/simulator.md)."""
