"""Signals other apps connect to, so that projects (the lower layer) never imports them."""

from django.dispatch import Signal

# Sent by destroy_project before anything is destroyed, outside any transaction, with `principal`,
# `container` and `terminate_jobs`: a receiver ends the work that runs in the project (waiting for
# it if it must) or raises a DXError to refuse (jobs: InvalidState while jobs are unfinished).
project_destroying = Signal()

# Sent inside the transaction that destroys the project, just before its rows go, with `principal`
# and `container`: a receiver settles its records there and returns the other containers to
# destroy with the project (jobs: the workspaces kept after their jobs ended).
project_deleting = Signal()
