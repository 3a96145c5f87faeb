"""Benchmarks: deploy times against the floor and the unavoidable work, as the fleet grows."""
