"""What every room of Salon shares: its error types (`core.errors`), its SQLite layer (`core.sqlite`) and its
one way of writing a file whole (`core.files`). Imports nothing of ours; never torch (docs/ARCHITECTURE.md)."""
