"""The CNI plugin (`routed-cni`): container runtimes attach containers through the daemon."""
