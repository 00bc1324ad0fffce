"""The host's data plane: forwarding sysctls and workload veths, over pyroute2."""
