"""Run context, run directory and stage paths, checkpoints, seeding, metrics logs: what every stage runs on."""
