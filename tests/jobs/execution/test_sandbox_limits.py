"""The job sandbox's limits: memory, CPUs, disk, processes, and the instance types that set them."""

import os

import pytest

from jobs.execution import sandbox
from jobs.execution.sandbox import cgroups
from tests.jobs.execution.conftest import PYTHON, make_spec, run

pytestmark = pytest.mark.usefixtures("no_sandbox_outlives_its_test")

GROW = "import sys; data = b'x' * (int(sys.argv[1]) * 1024 * 1024); print('allocated')"


def test_an_allocation_beyond_memory_mb_fails_and_one_within_it_succeeds(bubblewrap, data_dir):
    spec = make_spec("job-memory", memory_mb=256)
    code, out, err = run(spec, f'{PYTHON} -c "{GROW}" 1024')
    assert code != 0 and "allocated" not in out
    assert "MemoryError" in err or code == 137
    assert run(spec, f'{PYTHON} -c "{GROW}" 32')[:2] == (0, "allocated\n")


def test_without_a_memory_cgroup_rlimit_as_stops_an_oversized_allocation(mode, data_dir, monkeypatch):
    monkeypatch.setattr(cgroups, "_hierarchies", lambda: [])
    spec = make_spec("job-rlimit", memory_mb=256)
    proc = sandbox.launch(spec, [PYTHON, "-c", GROW, "1024"])
    err = proc.stderr.read().decode()
    assert proc.wait() != 0 and "MemoryError" in err
    assert proc.mechanisms["memory"] == "RLIMIT_AS"


@pytest.mark.parametrize("with_cgroups", [True, False], ids=["cpuset", "affinity"])
def test_cpus_limit_the_processors_the_job_runs_on(mode, data_dir, with_cgroups, monkeypatch):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs at least two CPUs to show a limit")
    if not with_cgroups:
        monkeypatch.setattr(cgroups, "_hierarchies", lambda: [])
    spec = make_spec("job-cpus", cpus=1)
    proc = sandbox.launch(spec, [PYTHON, "-c", "import os; print(len(os.sched_getaffinity(0)))"])
    assert proc.stdout.read() == b"1\n" and proc.wait() == 0
    if not with_cgroups:
        assert proc.mechanisms["cpus"] == "sched_setaffinity"


def test_a_job_writing_past_its_disk_limit_is_stopped_with_the_reason(bubblewrap, data_dir, settings):
    settings.DXWEB_DISK_CHECK_SECONDS = 0.1
    spec = make_spec("job-disk", disk_mb=64)
    # 10 MiB files, alternately in the home and in /var/tmp (the root layer), up to 2 GiB if nothing stops it.
    proc = sandbox.launch(
        spec,
        [
            "bash",
            "-c",
            "for i in $(seq 200); do "
            "d=$([ $((i % 2)) = 0 ] && echo . || echo /var/tmp); "
            "head -c 10485760 /dev/zero > $d/f$i || exit 9; done; echo survived",
        ],
    )
    out = proc.stdout.read().decode()
    assert proc.wait(60) == 137 and "survived" not in out
    assert proc.limit_exceeded.startswith("The job wrote ") and "more than its limit of 64 MiB" in proc.limit_exceeded
    # What reached the disk is bounded by what the job can write between two looks, not by what it tried.
    assert sandbox.disk_usage([spec.layer_dir()]) < 1024 * 1024 * 1024
    assert proc.mechanisms["disk"] == "RLIMIT_FSIZE + usage watch"


def test_a_single_file_cannot_grow_past_the_disk_limit(bubblewrap, data_dir):
    spec = make_spec("job-bigfile", disk_mb=16)
    code, out, err = run(spec, "head -c 33554432 /dev/zero > big; echo status $?; stat -c %s big")
    assert out.split() == ["status", "153", str(16 * 1024 * 1024)]  # SIGXFSZ at the limit


def test_a_job_within_its_disk_limit_is_left_alone(bubblewrap, data_dir, settings):
    settings.DXWEB_DISK_CHECK_SECONDS = 0.05
    code, out, err = run(make_spec("job-small-disk", disk_mb=64), "head -c 8388608 /dev/zero > f; sleep 0.5; echo ok")
    assert (code, out) == (0, "ok\n")


def test_a_nearly_full_host_disk_stops_the_job(bubblewrap, data_dir, settings):
    settings.DXWEB_DISK_CHECK_SECONDS = 0.05
    settings.DXWEB_DISK_RESERVE_MB = 1024 * 1024 * 1024  # more than any disk here has free
    proc = sandbox.launch(make_spec("job-full-host", disk_mb=64), ["sleep", "30"])
    assert proc.wait(30) == 137
    assert proc.limit_exceeded.startswith("The worker's disk is nearly full")


def test_every_instance_type_has_a_disk_limit(settings):
    settings.DXWEB_INSTANCE_TYPES = {
        "small": {"cpus": 1, "memory_mb": 512, "disk_mb": 100},
        "plain": {"cpus": 1, "memory_mb": 512},
    }
    settings.DXWEB_DEFAULT_DISK_MB = 777
    assert sandbox.instance_limits("small")["disk_mb"] == 100
    assert sandbox.instance_limits("plain")["disk_mb"] == 777


def test_the_pids_limit_stops_a_fork_loop(bubblewrap, data_dir):
    script = (
        "import os, time\nn = 0\ntry:\n    for _ in range(64):\n        if os.fork() == 0:\n"
        "            time.sleep(60); os._exit(0)\n        n += 1\nexcept OSError:\n    print('stopped', n)\n"
    )
    proc = sandbox.launch(make_spec("job-pids", pids_max=16), [PYTHON, "-c", script])
    out = proc.stdout.read().decode()
    proc.wait()
    if "pids" not in proc.mechanisms:
        pytest.skip("no pids cgroup here")
    assert out.startswith("stopped") and int(out.split()[1]) < 16


def test_an_unknown_instance_type_is_refused_and_the_default_is_used_when_none_is_named(settings):
    settings.DXWEB_INSTANCE_TYPES = {
        "mem1_ssd1_x2": {"cpus": 1, "memory_mb": 1024},
        "big": {"cpus": 4, "memory_mb": 8000},
    }
    settings.DXWEB_DEFAULT_INSTANCE_TYPE = "mem1_ssd1_x2"
    assert sandbox.instance_limits() == {"cpus": 1, "memory_mb": 1024, "disk_mb": settings.DXWEB_DEFAULT_DISK_MB}
    assert sandbox.instance_limits("big") == {"cpus": 4, "memory_mb": 8000, "disk_mb": settings.DXWEB_DEFAULT_DISK_MB}
    with pytest.raises(KeyError, match="available: big, mem1_ssd1_x2"):
        sandbox.instance_limits("mem9_x99")


@pytest.mark.skipif("DXWEB_INSTANCE_TYPES" in os.environ, reason="the table is overridden by the environment")
def test_the_default_instance_table_names_the_dnanexus_types():
    names = {"mem1_ssd1_x2", "mem1_ssd1_x4", "mem2_ssd1_x2", "mem2_hdd2_x2", "mem1_ssd1_v2_x2", "mem3_ssd1_x2"}
    assert names <= set(sandbox.instance_types())
    assert all(sandbox.instance_limits(n)["memory_mb"] > 0 and sandbox.instance_limits(n)["cpus"] > 0 for n in names)
