"""The jobs application's configuration (named in INSTALLED_APPS: jobs/apps/ is the app executables' package)."""

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Imported once the app registry is ready, as Django requires of modules that use models.
        from projects.models import DESCRIBERS
        from projects.signals import project_deleting, project_destroying

        from . import ending
        from .signals import stage_job_ended
        from .workflows import analyses, stages

        project_destroying.connect(ending.end_project_jobs, dispatch_uid="jobs.end_project_jobs")
        project_deleting.connect(ending.settle_project_jobs, dispatch_uid="jobs.settle_project_jobs")
        stage_job_ended.connect(analyses.stage_ended, dispatch_uid="jobs.stage_ended")
        DESCRIBERS["workflow"] = stages.describe_workflow
