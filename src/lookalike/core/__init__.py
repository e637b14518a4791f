"""Settings, errors, logs and stage timing: what every other package may use."""
