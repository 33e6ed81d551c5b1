"""The log writer's cap costs no memory: past it, lines are dropped as they are written, not queued.

The writer stores from its own thread (its own connection): the test must not hold a transaction.
"""
from jobs.logs import LogWriter
from jobs.models import LogLine


def test_a_flood_past_the_cap_is_dropped_at_once_and_leaves_one_marker(transactional_db, alice, project, settings):
    settings.DXWEB_LOG_CAP_BYTES = 10_000
    applet = alice.ok("/applet/new", {"project": project, "name": "x", "inputSpec": [], "outputSpec": [],
                                      "runSpec": {"interpreter": "bash", "code": "main() { true; }"}})["id"]
    job_id = alice.ok(f"/{applet}/run", {"project": project})["id"]
    writer = LogWriter(job_id)
    line = "x" * 99  # 100 bytes with its newline
    for _ in range(100_000):  # 10 MB offered, 10 kB allowed
        writer.write("STDOUT", line)
    # Only the lines up to (and across) the cap were ever queued.
    assert writer.queued == 101 and writer.dropped >= 100_000 - 101
    writer.flush()
    writer.close()
    stored = list(LogLine.objects.filter(job_id=job_id).order_by("seq").values_list("msg", flat=True))
    assert stored[:100] == [line] * 100
    assert len(stored) == 101 and stored[-1].startswith("[log truncated")
