"""The Slack adapter: Bolt over Socket Mode or HTTP (app.py), payloads to values (events.py),
files (files.py), rate budgets (pacing.py) and the reply surfaces (surface.py, stream.py)."""
