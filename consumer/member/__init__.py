"""A consumer-group member: the loop that knows the order of the steps, and what it composes.

poll -> decode -> lanes -> deliver -> settle -> commit; assignment, revocation and shutdown;
records set aside (dead letters, parking). Built by cli.py from real adapters.
"""
