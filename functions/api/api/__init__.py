"""ApiFunction: the HTTP API (presigned uploads, jobs, files, health)."""
