"""Common ground."""
