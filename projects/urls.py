"""Page URLs. Each ends with a slash so that none can collide with an API route (/<id>/<method>)."""

from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from . import data, profile, views

project = "projects/<str:project_id>/"
org = "orgs/<str:org_id>/"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(project, views.project, name="project"),
    path(project + "folders/new/", views.new_folder, name="new-folder"),
    path(project + "folders/rename/", views.rename_folder, name="rename-folder"),
    path(project + "objects/rename/", views.rename_object, name="rename-object"),
    path(project + "objects/move/", views.move, name="move"),
    path(project + "objects/remove/", views.remove, name="remove"),
    path(project + "objects/copy/", data.copy, name="copy"),
    path(project + "files/<str:file_id>/", data.data_object, name="file"),
    path(project + "files/<str:file_id>/tags/", data.object_tags, name="file-tags"),
    path(project + "files/<str:file_id>/properties/", data.object_properties, name="file-properties"),
    path(project + "files/<str:file_id>/use/", data.use_as_input, name="file-use"),
    path(project + "files/<str:file_id>/copy/", data.copy_object, name="file-copy"),
    path(project + "files/<str:file_id>/download/", views.download, name="download"),
    path(project + "search/", data.search, name="search"),
    path(project + "settings/", views.project_settings, name="project-settings"),
    path(project + "upload/", views.upload_new, name="upload-new"),
    path(project + "upload/<str:file_id>/part/", views.upload_part, name="upload-part"),
    path(project + "upload/<str:file_id>/close/", views.upload_close, name="upload-close"),
    path(project + "members/", views.members, name="members"),
    path(project + "members/change/", views.member_change, name="member-change"),
    path(project + "members/revoke/", views.member_revoke, name="member-revoke"),
    path(project + "leave/", views.leave, name="leave"),
    path(project + "destroy/", views.destroy, name="destroy"),
    path("orgs/", views.orgs, name="orgs"),
    path(org, views.org, name="org"),
    path(org + "members/role/", views.org_role, name="org-role"),
    path(org + "members/remove/", views.org_remove, name="org-remove"),
    path("profile/", profile.profile, name="profile"),
    path("profile/tokens/", profile.token_create, name="token-create"),
    path("profile/tokens/<int:token_id>/revoke/", profile.token_revoke, name="token-revoke"),
    path("profile/ssh-key/", profile.ssh_key, name="ssh-key"),
    path("profile/notifications/", profile.notify_settings, name="notify-settings"),
    path("profile/email/", profile.email_address, name="email-address"),
    path("profile/email/confirm/<str:token>/", profile.email_confirm, name="email-confirm"),
    # Django's own views: the old password is checked, the session stays signed in, others are signed out.
    path(
        "profile/password/",
        auth_views.PasswordChangeView.as_view(
            success_url=reverse_lazy("password-change-done"), extra_context={"section": "profile"}
        ),
        name="password-change",
    ),
    path(
        "profile/password/done/",
        auth_views.PasswordChangeDoneView.as_view(extra_context={"section": "profile"}),
        name="password-change-done",
    ),
    path("cli/", profile.cli, name="cli"),
    path("cli/token/", profile.cli_token, name="cli-token"),
]
