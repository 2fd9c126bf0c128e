"""Benchmarks: each prints a table; none is a test. Run: python -m benchmarks.<name>."""
