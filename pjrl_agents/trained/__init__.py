"""Trained runs in use: `load_policy` and rendering."""
