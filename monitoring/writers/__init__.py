"""Monitoring writer plugins, one module each; see `updraft.monitoring.registry`."""
