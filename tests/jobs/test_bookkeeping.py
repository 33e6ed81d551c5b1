"""What a trivial job costs the database, submit to done: committed transactions and queries (aims:
docs/scheduling.md).

The job is real (a bash applet `main() { true; }` in the real sandbox); its submission goes through the
API view and its worker's side runs in this process, as the Celery task's own function, so that
bench/dbcount.py counts both sides, every thread. `bench jobs` prints the same count.
"""

import os
import threading

import pytest
from django.db import connection, connections, transaction

from bench import dbcount
from jobs.execution import sandbox
from projects.models import ApiToken

# The targets: a trivial job from submit to done in at most this many.
MAX_TRANSACTIONS = 8
MAX_QUERIES = 20


@pytest.mark.django_db(transaction=True)
def test_the_count_counts_transactions_as_postgresql_does_in_every_thread(alice):
    def elsewhere():
        ApiToken.objects.filter(user=alice.user).update(name="elsewhere")  # autocommit: 1
        connections.close_all()

    with dbcount.counting() as count:
        ApiToken.objects.count()  # autocommit: 1
        with transaction.atomic():  # 1, of two statements (a savepoint inside: two more)
            ApiToken.objects.count()
            with transaction.atomic():
                ApiToken.objects.filter(user=alice.user).update(name="a")
        with transaction.atomic():  # nothing ran: never reached the server
            pass
        try:
            with transaction.atomic():  # rolled back: not committed
                ApiToken.objects.filter(user=alice.user).update(name="b")
                raise RuntimeError
        except RuntimeError:
            pass
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
    assert (count.committed, count.rolled_back) == (3, 1), count.report()
    assert count.queries == 7, count.report()  # 1, 2 and the SAVEPOINT and its RELEASE, 1 rolled back, 1
    assert [t.thread for t in count.transactions][-1] != threading.current_thread().name


@pytest.fixture
def sandboxed(settings):
    """The real sandbox; skip where bubblewrap cannot run here, except in CI where that is a failure."""
    settings.DXWEB_SANDBOX = "bubblewrap"
    try:
        sandbox.bwrap_program()
    except sandbox.SandboxError as err:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{err} (CI must run the sandbox tests)")
        pytest.skip(str(err))


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


@pytest.fixture
def counted(alice, project, trivial, sandboxed):
    """The count of one trivial job (after a first one: a worker's first job sets up what it keeps);
    bench/dbcount.py leaves PostgreSQL's check of an idle connection out of it."""
    dbcount.count_trivial_job(alice.token, project, trivial)
    result = dbcount.count_trivial_job(alice.token, project, trivial)
    print(result["report"])
    return result


@pytest.mark.django_db(transaction=True)
def test_the_count_sees_the_submission_and_the_worker_of_a_job_that_ran(counted):
    assert counted["state"] == "done", counted["report"]
    phases = counted["phases"]
    assert phases["submit"]["queries"] > 0 and phases["submit"]["transactions"] > 0, counted["report"]
    assert phases["worker"]["queries"] > 0 and phases["worker"]["transactions"] > 0, counted["report"]
    sites = {row["site"].split(":")[0] for row in counted["by_site"]}
    assert {"dxweb/api.py", "jobs/actions.py"} <= sites, counted["report"]


@pytest.mark.django_db(transaction=True)
def test_a_trivial_job_costs_at_most_8_transactions_and_20_queries(counted):
    assert counted["state"] == "done", counted["report"]
    assert counted["transactions"] <= MAX_TRANSACTIONS, counted["report"]
    assert counted["queries"] <= MAX_QUERIES, counted["report"]
    # Nor one that ran nothing: on SQLite it takes the write lock all the same.
    assert counted["empty_transactions"] == 0, counted["report"]


@pytest.mark.django_db(transaction=True)
def test_a_claim_writes_in_one_statement_on_postgresql(counted):
    """Under the host's claim lock every round trip delays the other lanes: on PostgreSQL the claim's
    four writes (token, swap, transition, share) are one statement after its two reads."""
    claims = [t for t in counted["transaction_list"] if "claim_next" in t["site"]]
    assert len(claims) == 1 and claims[0]["committed"], counted["report"]
    assert claims[0]["statements"] == (3 if connection.vendor == "postgresql" else 6), counted["report"]
