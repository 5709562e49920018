"""The glidein (pilot) that runs on worker nodes.

What runs on the node is POSIX shell; this package holds the factory-side
helpers that stage it.
"""
