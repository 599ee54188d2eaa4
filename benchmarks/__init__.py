"""Benchmarks: scripts that print JSON figures, each with a baseline measured in the same run.

Run them all with ``python -m benchmarks.run [--quick]``; see docs/performance.md.
"""
