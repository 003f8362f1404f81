"""Persistence: SQLAlchemy Core tables, migrations and the queries of runs, steps and jobs.

Below the runtime and the executor port; it knows nothing of executors or the client.
"""
