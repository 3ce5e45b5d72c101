"""The chaos suite: a seeded run of random faults against a real agent, with its invariants (engine.py)."""
