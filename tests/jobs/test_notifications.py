"""Job notifications: in the app and by email when a job the user launched ends, each with an opt-out."""

import pytest
from django.core import mail
from django.test import Client

from jobs import actions, dispatch, notifications
from jobs.models import Job, Notification, State
from projects.models import User
from projects.permissions import Principal
from tests.helpers import launch


@pytest.fixture
def applet(alice, project):
    return alice.ok(
        "/applet/new",
        {
            "project": project,
            "name": "quick",
            "inputSpec": [],
            "outputSpec": [],
            "runSpec": {"interpreter": "bash", "code": "main() { true; }"},
        },
    )["id"]


def end(job_id, state=State.DONE):
    actions.claim(job_id, "w")
    if state == State.DONE:
        actions.finish(job_id, {})
    else:
        actions.fail(Job.objects.get(pk=job_id), "AppError", "the input is bad")


@pytest.fixture
def sent(monkeypatch):
    """Run the email task's body at once (the worker would), so the test sees what it sends."""
    queued = []
    monkeypatch.setattr(dispatch, "email_job_ended", lambda pk: (queued.append(pk), notifications.send_email(pk)))
    return queued


def test_the_launcher_gets_a_notice_and_an_email_when_a_job_fails(
    alice, project, applet, sent, django_capture_on_commit_callbacks
):
    User.objects.filter(pk=alice.user.pk).update(email="alice@example.org")
    job_id = launch(alice, project, applet)
    with django_capture_on_commit_callbacks(execute=True):
        end(job_id, State.FAILED)
    notice = Notification.objects.get(user=alice.user)
    assert notice.job_id == job_id and notice.state == "failed" and not notice.read
    assert "AppError: the input is bad" in notice.message
    assert len(mail.outbox) == 1
    email = mail.outbox[0]
    assert email.to == ["alice@example.org"] and email.subject == "[dxweb] quick failed"
    assert f"/jobs/{job_id}/" in email.body and "AppError: the input is bad" in email.body


def test_subjobs_do_not_notify_and_opt_outs_are_respected(
    alice, project, applet, sent, django_capture_on_commit_callbacks
):
    alice.user.notify_by_email = False
    alice.user.save()
    User.objects.filter(pk=alice.user.pk).update(email="alice@example.org")
    job_id = launch(alice, project, applet)
    actions.claim(job_id, "w")
    child = actions.new_subjob(Principal(user=alice.user, job_id=job_id), {"function": "other", "input": {}})
    with django_capture_on_commit_callbacks(execute=True):
        end(child.pk if hasattr(child, "pk") else child["id"])
        actions.finish(job_id, {})
    assert Job.objects.get(pk=job_id).state == State.DONE
    assert [n.job_id for n in Notification.objects.filter(user=alice.user)] == [job_id]
    assert mail.outbox == [] and sent == []
    User.objects.filter(pk=alice.user.pk).update(notify_in_app=False)
    Notification.objects.all().delete()
    second = launch(alice, project, applet)
    with django_capture_on_commit_callbacks(execute=True):
        end(second)
    assert not Notification.objects.exists()


def test_the_page_shows_only_the_users_own_notices_and_marks_them_read(
    alice, bob, project, applet, django_capture_on_commit_callbacks
):
    job_id = launch(alice, project, applet)
    with django_capture_on_commit_callbacks(execute=True):
        end(job_id)
    web = Client()
    web.force_login(alice.user)
    dashboard = web.get("/").content.decode()
    assert 'id="bell-count">1<' in dashboard
    page = web.get("/notifications/").content.decode()
    assert job_id in page and "new" in page
    # Opening the page leaves them unread; "Mark all read" marks them (tests/jobs/test_live_lists.py).
    assert Notification.objects.filter(read=False).exists()
    assert web.post("/notifications/read/").status_code == 302
    assert not Notification.objects.filter(read=False).exists()
    assert 'id="bell-count"' not in web.get("/").content.decode()
    other = Client()
    other.force_login(bob.user)
    assert job_id not in other.get("/notifications/").content.decode()
    assert Client().get("/notifications/").status_code == 302


def test_the_profile_turns_notifications_off(alice):
    web = Client()
    web.force_login(alice.user)
    assert web.post("/profile/notifications/", {"notify_in_app": "on"}).status_code == 302
    alice.user.refresh_from_db()
    assert alice.user.notify_in_app and not alice.user.notify_by_email
    page = web.get("/profile/").content.decode()
    assert 'id="id_notify_in_app" checked' in page and 'id="id_notify_by_email" >' in page


@pytest.mark.live
def test_the_running_product_emails_the_launcher_through_its_worker(live, dx_as):
    """End to end: the worker ends the job, queues the email task, and the console backend prints it."""
    import json
    import time
    from pathlib import Path

    dx = dx_as("dora")
    live.manage(
        "shell",
        "-c",
        "from projects.models import User; User.objects.filter(username='dora').update(email='dora@example.org')",
    )
    project = dx("new", "project", "mail", "--brief").stdout.strip()
    dx("select", project)
    dx("build", str(Path(__file__).parent / "apps" / "nap"))
    job_id = dx("run", "nap", "-iseconds=0", "-itag=mailed", "-y", "--brief", "--wait").stdout.strip().splitlines()[-1]
    assert json.loads(dx("describe", job_id, "--json").stdout)["state"] == "done"
    deadline = time.monotonic() + 30
    while "Subject: [dxweb] nap done" not in live.log_path.read_text(errors="replace"):
        assert time.monotonic() < deadline, "no email in the server's log"
        time.sleep(0.2)
    log = live.log_path.read_text(errors="replace")
    assert "To: dora@example.org" in log and f"/jobs/{job_id}/" in log
