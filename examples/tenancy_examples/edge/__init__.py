"""Demonstrates an edge service: users' tokens stop here, backends get context tokens."""
