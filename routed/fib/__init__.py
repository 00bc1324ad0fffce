"""Kernel FIB programming: the route model, the pure diff, the netlink edge and the reconciler."""
