"""The shipped alert rules and configs, as package data (read with importlib.resources)."""
