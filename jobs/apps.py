from django.apps import AppConfig

from projects.signals import project_deleting, project_destroying


class JobsConfig(AppConfig):
    name = "jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Imported once the app registry is ready, as Django requires of modules that use models.
        from . import ending

        project_destroying.connect(ending.end_project_jobs, dispatch_uid="jobs.end_project_jobs")
        project_deleting.connect(ending.settle_project_jobs, dispatch_uid="jobs.settle_project_jobs")
