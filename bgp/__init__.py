"""BGP control plane: ExaBGP supervision and bridge, RIB, best path, reflection, policy.

Pure logic lives here; the only I/O is the ExaBGP bridge (added with BGP support).
"""
