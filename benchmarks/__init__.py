"""Benchmarks of squidmesh against the database's own limit.

``python -m benchmarks --db sqlite|postgres`` runs every measurement and prints one table; see
``docs/performance.md`` for what each row measures and the latest figures.
"""
