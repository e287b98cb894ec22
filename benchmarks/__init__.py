"""Benchmarks of issue 7; each script documents how to run it. Results: docs/performance.md."""
