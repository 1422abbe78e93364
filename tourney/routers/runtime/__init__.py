"""The run-time cascade: answering under deadlines, submissions, the router bundle and what it may load."""
