"""Benchmarks (print JSON; compare against a baseline measured in the same run)."""
