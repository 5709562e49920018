"""Updraft: pilot provisioning for HTCondor pools.

This package is the shared core (config loading, the HTCondor adapter, the
command-line root); the components live in sub-packages.
"""

__version__ = "0.1.0"
