"""A community's own data (community.db): server and channel settings, schedules and digests, web-gallery
links, browse sessions. Beside catalog/; used by commands/ and the front ends (docs/ARCHITECTURE.md)."""
