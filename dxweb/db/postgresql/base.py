"""Django's PostgreSQL backend, whose kept connections are checked only when they have been idle.

With CONN_HEALTH_CHECKS, Django checks a kept connection (a `SELECT 1`) at the first query of each
request and each job runner's turn, so that a connection the server dropped (a restart, a failover)
is replaced instead of failing the request. Under load that is one round trip in three or four of
a small request, spent on a connection that ran a statement a few milliseconds before. This backend
skips the check when the connection's last statement began less than RECHECK_AFTER seconds ago: the
check is made, as Django makes it, once a connection has been idle, and a server that drops
connections within that second fails the one request that was using it, as it would without checks.
"""

import time

from django.db.backends.postgresql import base

# Seconds of idleness after which a kept connection is checked before its next statement.
RECHECK_AFTER = 1.0


class DatabaseWrapper(base.DatabaseWrapper):
    last_used = float("-inf")

    def close_if_health_check_failed(self):
        if not self.health_check_done and time.monotonic() - self.last_used < RECHECK_AFTER:
            self.health_check_done = True
        super().close_if_health_check_failed()

    def _cursor(self, name=None):
        cursor = super()._cursor(name)
        self.last_used = time.monotonic()
        return cursor
