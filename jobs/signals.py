"""Signals the jobs app sends to itself, where a direct call would make an import circle."""

from django.dispatch import Signal

# A stage's job (Job.analysis set, its own origin) has ended and that is committed: its analysis
# looks again (jobs.workflows.analyses.stage_ended). Sent with analysis_id.
stage_job_ended = Signal()
