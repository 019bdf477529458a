"""Leaf layer: pyroute2 bridges/veths/netns (later), container network files."""
