"""The worker role: fetch tasks from a coordinator, run them, upload their artifacts, commit."""
