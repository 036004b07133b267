"""The engine: walks a playbook's steps, records everything, resumes after a crash."""
