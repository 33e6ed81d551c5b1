"""The jobs application starts with its configuration: its hooks are connected (a plain AppConfig would
leave workflows without their describer and destroyed projects' jobs unsettled)."""

from django.apps import apps

from jobs.config import JobsConfig
from jobs.workflows import stages
from projects.models import DESCRIBERS
from projects.signals import project_destroying


def test_the_jobs_application_runs_its_configuration():
    assert isinstance(apps.get_app_config("jobs"), JobsConfig)
    assert DESCRIBERS["workflow"] is stages.describe_workflow
    assert project_destroying.has_listeners()
