"""The durable fair job queue and the one GPU worker (see `jobs.queue` for the restart rule)."""
