"""A consumer-group member: the loop that knows the order of the steps, and what it composes.

poll -> decode -> lanes -> deliver -> settle -> commit (engine.py). The engine is composed, not
inherited: records in (intake.py), assignment, revocation and shutdown (membership.py), commits
(commits.py), the rate budget's share (budget_share.py), bulk listings (listing.py), records set
aside (aside.py), fencing, stopping and progress output, all sharing one `Holdings`. cli.py hands
the engine its real adapters.
"""
