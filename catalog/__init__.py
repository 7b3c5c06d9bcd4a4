"""The catalog (SQLite truth + Whoosh index). Not built yet: it arrives with issue #5."""
