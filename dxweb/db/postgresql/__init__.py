"""PostgreSQL, as Django's backend, with health checks of kept connections skipped while they are busy."""
