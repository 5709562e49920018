"""Monitoring: typed per-cycle snapshots and the writer plugins that store them."""
