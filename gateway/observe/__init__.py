"""Seeing what the gateway does: logs now; metrics and alerts join here."""
