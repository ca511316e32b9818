"""The message core."""
