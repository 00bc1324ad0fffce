"""routed's own nftables table: what a workload may send (anti-spoofing), reconciled like routes."""
