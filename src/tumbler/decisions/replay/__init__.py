"""Replay caches: each accepted digest is claimed once, locally or across a fleet."""
