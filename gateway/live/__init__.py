"""Live files."""
