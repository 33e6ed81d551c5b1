"""Page URLs for applets and jobs; like projects/urls.py each ends with a slash, apart from the API's routes."""

from django.urls import path

from . import lists, notices, views
from .apps import views as app_views
from .workflows import views as workflow_views

project = "projects/<str:project_id>/"
job = "jobs/<str:job_id>/"
app = "apps/<str:name>/<str:version>/"

urlpatterns = [
    path(project + "applets/", views.applets, name="applets"),
    path(project + "applets/new/", views.applet_new, name="applet-new"),
    path(project + "applets/<str:applet_id>/", views.applet, name="applet"),
    path(project + "applets/<str:applet_id>/run/", views.launch, name="launch"),
    path(project + "workflows/", workflow_views.workflows, name="workflows"),
    path(project + "workflows/<str:workflow_id>/", workflow_views.workflow, name="workflow"),
    path(project + "workflows/<str:workflow_id>/run/", workflow_views.workflow_launch, name="workflow-launch"),
    path(project + "workflows/<str:workflow_id>/<str:action>/", workflow_views.workflow_edit, name="workflow-edit"),
    path("apps/", app_views.catalog, name="apps"),
    path("apps/<str:name>/", app_views.app_page, name="app"),
    path(app, app_views.app_page, name="app-version"),
    path(app + "run/", app_views.app_launch, name="app-launch"),
    path(app + "publish/", app_views.app_publish, name="app-publish"),
    path(app + "developers/", app_views.app_developers, name="app-developers"),
    path(app + "users/", app_views.app_users, name="app-users"),
    path("analyses/<str:analysis_id>/", workflow_views.analysis, name="analysis"),
    path("analyses/<str:analysis_id>/terminate/", workflow_views.analysis_terminate, name="analysis-terminate"),
    path(project + "jobs/", lists.project_jobs, name="project-jobs"),
    path("jobs/", lists.my_jobs, name="my-jobs"),
    path(job, views.job, name="job"),
    path(job + "log/", views.job_log, name="job-log"),
    path(job + "terminate/", views.job_terminate, name="job-terminate"),
    path(job + "rerun/", views.job_rerun, name="job-rerun"),
    path(job + "tags/", views.job_tags, name="job-tags"),
    path(job + "properties/", views.job_properties, name="job-properties"),
    path(job + "debug/", views.job_debug, name="job-debug"),
    path(job + "allow-ssh/", views.job_allow_ssh, name="job-allow-ssh"),
    path(job + "hold/extend/", views.job_hold_extend, name="job-hold-extend"),
    path(job + "hold/release/", views.job_hold_release, name="job-hold-release"),
    path("files/search/", views.file_search, name="file-search"),
    path("notifications/", views.notifications, name="notifications"),
    path("notifications/read/", notices.read_many, name="notifications-read"),
    path("notifications/<int:notice_id>/read/", notices.read_one, name="notification-read"),
]
