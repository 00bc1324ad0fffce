"""Workload bookkeeping: the persistent store and the operations the CLI and API share."""
