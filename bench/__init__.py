"""Benchmarks of the SPEC §7 performance budgets (run ``python bench/bench.py``)."""
