"""The grid lab: a real HTCondor deployment (VO pool, WMS collector, factory
schedd, two sites with HTCondor-C CEs) on 127.0.0.1, for tests and demos."""
