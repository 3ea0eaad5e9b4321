"""The server under test: find it, wait for it, or start it (process, containers)."""
