"""Test doubles that speak real wire protocols (used by the tests and the benchmarks)."""
