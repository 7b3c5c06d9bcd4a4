"""Models: the registry and A1111 hashes, loading checkpoints, the weight-file gates and formats."""
