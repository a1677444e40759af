"""End-to-end tests through a real Kong Gateway (see kong.py and docs/testing.md)."""
