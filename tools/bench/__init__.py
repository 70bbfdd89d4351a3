"""The benchmark: Homeward against the raw limits of the same machine, in one run."""
