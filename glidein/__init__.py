"""The glidein (pilot) that runs on worker nodes.

What runs on the node is POSIX shell (`glidein_startup.sh`, assembled from
the parts in lib/ by `assemble`); this package also holds the factory-side
helpers, such as `report.parse_report` for the report a pilot prints at
exit. README.md has the interface.
"""
