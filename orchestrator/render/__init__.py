"""Rich views of plans, runs, status, drills and reports: they consume events."""
