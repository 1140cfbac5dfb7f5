"""The operations desk (`accord desk`): staff sign in, find cases in lists and queues read from
Temporal visibility, read a case at a glance and act on it within their authority. Server-
rendered (FastAPI, Jinja2), with a JSON API the CLI uses (`accord login`)."""
