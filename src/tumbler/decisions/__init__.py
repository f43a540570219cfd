"""Deciding what a knock means: which door (verifier), claimed once (replay), in sequence."""
