"""A creating call (/<class>/new, /<id>/run) is one transaction: token lookup, the call and its nonce."""

import pytest

from bench import dbcount
from dxweb import api
from jobs import dispatch
from jobs.models import Job
from projects.models import ApiToken, Container, Nonce


@pytest.fixture
def no_messages(monkeypatch):
    """Launches send no wake-up to a worker (there is none)."""
    monkeypatch.setattr(dispatch, "run_job", lambda job_id: None)


@pytest.fixture
def trivial(alice, project):
    return alice.ok(
        "/applet/new",
        {
            "project": project,
            "name": "trivial",
            "inputSpec": [],
            "outputSpec": [],
            "runSpec": {"interpreter": "bash", "code": dbcount.TRIVIAL},
        },
    )["id"]


@pytest.mark.django_db(transaction=True)
def test_running_an_applet_is_one_transaction_with_its_nonce_or_without(alice, project, trivial, no_messages):
    for body in ({"project": project}, {"project": project, "nonce": "run-1"}):
        with dbcount.counting() as count:
            job_id = alice.ok(f"/{trivial}/run", body)["id"]
        assert count.committed == 1, count.report()
        assert Job.objects.get(pk=job_id).state == "runnable"
    assert alice.ok(f"/{trivial}/run", {"project": project, "nonce": "run-1"})["id"] == job_id


@pytest.mark.django_db(transaction=True)
def test_a_new_object_is_one_transaction(alice, project):
    with dbcount.counting() as count:
        alice.ok("/file/new", {"project": project, "name": "a.txt", "nonce": "file-1"})
    assert count.committed == 1, count.report()


def test_a_failed_creation_still_records_that_its_token_was_used(alice):
    ApiToken.objects.filter(user=alice.user).update(last_used=None)
    status, reply = alice.call("/project/new", {"name": 5})
    assert status == 422 and reply["error"]["type"] == "InvalidInput"
    assert ApiToken.objects.get(user=alice.user).last_used is not None


class FirstLookupMisses:
    """Nonce for the dispatcher, whose first lookup misses: as when a concurrent retry with the same
    nonce commits between the call's lookup and its insert."""

    def __init__(self):
        self.missed = False

    @property
    def objects(self):
        return self

    def filter(self, **lookup):
        found = Nonce.objects.filter(**lookup)
        if self.missed:
            return found
        self.missed = True
        return found.none()

    def create(self, **fields):
        return Nonce.objects.create(**fields)


@pytest.mark.django_db(transaction=True)
def test_a_call_that_loses_the_race_for_its_nonce_answers_as_the_winner_and_leaves_nothing(alice, monkeypatch):
    body = {"name": "raced", "nonce": "race-1"}
    key = api.principal_for_token(alice.token).key
    winner = alice.ok("/project/new", {"name": "raced", "nonce": "race-0"})
    Nonce.objects.create(principal=key, nonce="race-1", route="/project/new", input_digest="", response=winner)
    monkeypatch.setattr(api, "Nonce", FirstLookupMisses())
    assert alice.ok("/project/new", body) == winner
    assert Container.objects.filter(name="raced").count() == 1  # the loser's project was rolled back
