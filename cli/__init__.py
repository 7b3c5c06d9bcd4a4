"""The `salon` command line: a thin front end over `commands/` for local use, tests and scripts."""
