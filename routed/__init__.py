"""routed: the node daemon (config, kernel data plane, workloads, reconciler, CLI, API)."""

__version__ = "0.1.0"
