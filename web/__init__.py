"""The read-only web gallery (a thin front end over the catalog; see web/server.py)."""
