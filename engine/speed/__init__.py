"""Speed: the compiled fast path, step caching, token merging and CPU batch invariance."""
