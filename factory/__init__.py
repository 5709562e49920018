"""The factory: turns frontend requests into pilot jobs and tracks them."""
