"""What operators run den with: metrics, health checks, request ids and JSON
logs, task figures, and backups. Project-wide; no other app imports it."""
