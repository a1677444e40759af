"""The operator's command line and what only it needs."""
