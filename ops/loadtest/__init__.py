"""`ops loadtest`: the plan's load test (slice 12) with Locust, judged against the plan's criteria.

Scenarios in ops.loadtest.scenarios, the Locust run (a child process, ops.loadtest.locust_run) and the
orchestration in ops.loadtest.runner, the stack watched by ops.loadtest.watch, the report and its
criteria in ops.loadtest.report. How to run it and what it measured: docs/PERFORMANCE.md, "Load test".

This package imports nothing on purpose: ``python -m ops.loadtest.locust_run`` runs it first, and
Locust's gevent monkey-patching must come before httpx, aiohttp or ssl are imported.
"""
