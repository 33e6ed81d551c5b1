"""Job lists at scale: a project's jobs page and "My jobs" over a project of 100,000 jobs, against a bare page.

Setup (not timed): users alice, bob, carol (`server.user`), a project created by alice through the API,
then 100,000 Job rows inserted straight into the server's database by a `manage.py shell -c` script run
with the server's environment (`bulk_create`, one transaction; no JobTransition or log rows): ~75 %
origin jobs and ~25 % subjobs of them (`process`, `gather`), launched by alice 40 % / bob 30 % /
carol 20 % / admin 10 %, created uniformly over the past year, states mostly done (about 12 % failed,
5 % terminated; jobs of the last two days also running, runnable, waiting), names from ~30 applets,
about a third with a sample suffix ("bwa_mem NA12345"), 0-3 tags from ~60 (prod, test, rerun,
batch-01..50...), an applet-sized `spec` (~1.5 kB: the runSpec's code, as `run_applet` stores it)
and inputs/outputs with file links. On PostgreSQL the script then runs VACUUM ANALYZE (as autovacuum
would within a minute); SQLite gets no statistics (the product never runs ANALYZE there).

Timed: GET of each page variant with alice's session (logged in through POST /login/ with the csrf
token), one keep-alive connection, sequential requests, in rounds; each round runs every variant
`reps` times in an order that rotates from round to round. Per variant p50/p95/p99 (client side:
request sent → body read) and the ratio of its p50 and p95 to the baseline's. Baseline: `/cli/`
(the CLI access page: a logged-in template render with one small query). Target: p95 ≤ 150 ms for
every variant.

Diagnosis (after the timing, same database): every variant rendered in-process through Django's test
client in a `manage.py shell` (force_login as alice) under CaptureQueriesContext: the number of queries,
the time in SQL and the job list query's `EXPLAIN QUERY PLAN` (SQLite) / `EXPLAIN` (PostgreSQL).
"""

import json
import re
import time
from http.cookies import SimpleCookie
from urllib.parse import urlencode

from .common import connect, live_server, percentile, request, table, write_results
from .jobs import Client

TARGET_P95_MS = 150
USERS = ("alice", "bob", "carol")

SEED = r"""
import json, random, time
from django.db import connection, transaction
from django.conf import settings
from dxweb.ids import ALPHABET
from jobs.models import Job
from projects.models import Container, User

P = json.loads(%(params)r)
rng = random.Random(P["seed"])
project = Container.objects.get(pk=P["project"])
users = {u.username: u for u in User.objects.filter(username__in=["alice", "bob", "carol", "admin"])}
launchers = [users["alice"]] * 4 + [users["bob"]] * 3 + [users["carol"]] * 2 + [users["admin"]]
APPLETS = ["bwa_mem", "gatk_haplotypecaller", "gatk_genotypegvcfs", "samtools_sort", "samtools_index",
           "fastqc", "multiqc", "star_align", "salmon_quant", "kallisto_quant", "deepvariant", "bcftools_call",
           "picard_markduplicates", "trimmomatic", "cutadapt", "bowtie2_align", "hisat2_align", "featurecounts",
           "rsem_quant", "vep_annotate", "snpeff_annotate", "manta_sv", "strelka2_somatic", "mutect2",
           "cnvkit_batch", "plink_qc", "regenie_step1", "regenie_step2", "glnexus_merge", "bam_to_cram"]
TAGS = ["prod", "test", "rerun", "validation", "urgent", "wgs", "wes", "rna", "pilot", "cohort-a"] + \
       ["batch-%%02d" %% i for i in range(1, 51)]
CODE = "\n".join(["main() {"] + ["    # step %%d: download the inputs, run the tool, upload the outputs" %% i
                                  for i in range(12)]
                 + ["    dx-download-all-inputs", "    run_tool", "    dx-upload-all-outputs", "}"])
SPECS = {a: {"name": a, "dxapi": "1.0.0", "version": "1.2.%%d" %% (i %% 7),
             "inputSpec": [{"name": "reads", "class": "array:file", "patterns": ["*.fastq.gz"]},
                           {"name": "reference", "class": "file", "optional": True},
                           {"name": "sample", "class": "string"}, {"name": "threads", "class": "int", "default": 8}],
             "outputSpec": [{"name": "out", "class": "array:file"}, {"name": "report", "class": "file"}],
             "runSpec": {"interpreter": "bash", "code": CODE, "distribution": "Ubuntu", "release": "24.04",
                         "timeoutPolicy": {"*": {"hours": 48}}}} for i, a in enumerate(APPLETS)}
STATES_FINAL = ["done"] * 83 + ["failed"] * 12 + ["terminated"] * 5
STATES_RECENT = ["done"] * 60 + ["failed"] * 8 + ["terminated"] * 2 + ["running"] * 15 + ["runnable"] * 8 + \
                ["waiting_on_input"] * 3 + ["waiting_on_output"] * 3 + ["idle"]

def new_id(cls):
    return cls + "-" + "".join(rng.choice(ALPHABET) for _ in range(24))

def link():
    return {"$dnanexus_link": new_id("file")}

now = int(time.time() * 1000)
year = 365 * 24 * 3600 * 1000
rows = []
origins = []
t0 = time.time()
while len(rows) < P["n"]:
    created = now - rng.randrange(year)
    applet = rng.choice(APPLETS)
    sample = "NA%%05d" %% rng.randrange(100000)
    who = rng.choice(launchers)
    recent = now - created < 2 * 24 * 3600 * 1000
    state = rng.choice(STATES_RECENT if recent else STATES_FINAL)
    tags = rng.sample(TAGS, rng.choice([0, 0, 0, 1, 1, 2, 3]))
    run_input = {"reads": [link(), link()], "sample": sample, "threads": 8}
    started = created + rng.randrange(500, 120000) if state not in ("idle", "runnable", "waiting_on_input") else None
    stopped = (started + rng.randrange(60000, 6 * 3600 * 1000)
               if started and state in ("done", "failed", "terminated") else None)
    job = Job(
        id=new_id("job"), name=applet if rng.random() < 0.7 else "%%s %%s" %% (applet, sample),
        executable="applet-" + "".join(rng.choice(ALPHABET) for _ in range(24)), executable_name=applet,
        spec=SPECS[applet], function="main", project=project, folder="/results/" + sample,
        launched_by=who, state=state, input=run_input, original_input=run_input, run_input=run_input,
        output={"out": [link()], "report": link()} if state == "done" else None,
        failure_reason="AppError" if state == "failed" else "",
        failure_message="Error while running the command (exit code 1)" if state == "failed" else "",
        instance_type=settings.DXWEB_DEFAULT_INSTANCE_TYPE, tags=tags,
        properties={"sample": sample} if rng.random() < 0.3 else {},
        created=created, modified=stopped or started or created, started_running=started, stopped_running=stopped,
        tries=1 if started else 0,
    )
    job.origin_id = job.root_id = job.id
    rows.append(job)
    origins.append(job)
    # about a quarter of the rows are subjobs of an origin job
    for function in (["process"] * rng.choice([0, 0, 0, 0, 0, 1, 2, 3]) + ["gather"]) if rng.random() < 0.2 else []:
        if len(rows) >= P["n"]:
            break
        sub_created = created + rng.randrange(1000, 600000)
        sub_state = state if state != "running" else rng.choice(["running", "done", "runnable"])
        sub = Job(
            id=new_id("job"), name="%%s:%%s" %% (job.name, function), executable=job.executable,
            executable_name=applet, spec=SPECS[applet], function=function, project=project, folder=job.folder,
            parent_id=job.id, origin_id=job.id, root_id=job.id, launched_by=who, state=sub_state,
            input={"sample": sample}, original_input={"sample": sample}, run_input={"sample": sample},
            instance_type=job.instance_type, tags=[], created=sub_created, modified=sub_created,
            started_running=sub_created + 1000 if sub_state != "runnable" else None, tries=1,
        )
        rows.append(sub)
built = time.time() - t0
t1 = time.time()
with transaction.atomic():
    Job.objects.bulk_create(rows, batch_size=2000)
inserted = time.time() - t1
if connection.vendor == "postgresql":
    # What autovacuum (on by default) does within a minute of such an insert: the analyze, without
    # which the planner believes the project holds ~100 jobs and sorts all 100,000 rows for every
    # page, and the vacuum that sets the visibility map, without which an index-only scan still reads
    # every row it passes. Done here by hand: a server may run with autovacuum off.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
ordered = Job.objects.filter(project=project).order_by("-created", "-pk")
cursors = {}
for page in P["pages"]:
    last = ordered.values_list("created", "pk")[(page - 1) * 100 - 1]
    cursors[page] = "%%d.%%s" %% last
print("SEED-RESULT " + json.dumps({
    "n": Job.objects.filter(project=project).count(), "built_s": built, "insert_s": inserted, "cursors": cursors,
    "states": dict(__import__("collections").Counter(r.state for r in rows)),
    "subjobs": sum(1 for r in rows if r.parent_id),
    "alice": sum(1 for r in rows if r.launched_by_id == users["alice"].pk),
}))
"""

DIAGNOSE = r"""
import json, statistics, time
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from projects.models import User

P = json.loads(%(params)r)
client = Client(HTTP_HOST="127.0.0.1")
client.force_login(User.objects.get(username="alice"))
out = {}
for name, path in P["variants"]:
    client.get(path)  # warm
    runs = []
    for _ in range(P["reps"]):
        with CaptureQueriesContext(connection) as ctx:
            t0 = time.perf_counter()
            response = client.get(path)
            total = time.perf_counter() - t0
        runs.append((total, ctx.captured_queries, response.status_code))
    runs.sort(key=lambda r: r[0])
    total, queries, status = runs[len(runs) // 2]
    # The job list's query. SQLite computes rows as they are fetched, and CaptureQueriesContext times
    # execute() only: time execute + fetchall of the same SQL instead.
    listing = [q["sql"] for q in queries if 'FROM "jobs_job"' in q["sql"] and "LIMIT 101" in q["sql"]]
    list_ms, plan = None, None
    if listing:
        sql = listing[0]
        times = []
        with connection.cursor() as cursor:
            for _ in range(P["reps"]):
                t0 = time.perf_counter()
                cursor.execute(sql)
                cursor.fetchall()
                times.append((time.perf_counter() - t0) * 1000)
            cursor.execute(("EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN ") + sql)
            plan = [" ".join(str(c) for c in row) for row in cursor.fetchall()]
        list_ms = statistics.median(times)
    out[name] = {"status": status, "total_ms": total * 1000, "queries": len(queries),
                 "list_query_ms": list_ms, "list_query": listing[0] if listing else None, "plan": plan}
print("DIAG-RESULT " + json.dumps(out))
"""


class Browser:
    """A logged-in session over one keep-alive connection (cookies: csrftoken, sessionid)."""

    def __init__(self, server):
        self.server = server
        self.conn = connect(server)
        self.cookies = {}

    def _store(self, response):
        for header in response.headers.get_all("Set-Cookie") or []:
            for key, morsel in SimpleCookie(header).items():
                self.cookies[key] = morsel.value

    def request(self, method, path, body=None, headers=None):
        head = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()), **(headers or {})}
        response, data = request(self.conn, method, path, body, head)
        self._store(response)
        return response.status, data

    def login(self, username, password):
        self.request("GET", "/login/")
        body = urlencode({"username": username, "password": password, "csrfmiddlewaretoken": self.cookies["csrftoken"]})
        status, data = self.request(
            "POST",
            "/login/",
            body,
            {"Content-Type": "application/x-www-form-urlencoded", "Referer": self.server.url + "/login/"},
        )
        if status != 302 or "sessionid" not in self.cookies:
            raise RuntimeError(f"login failed: {status} {data[:300]!r}")


def shell(server, code, marker):
    out = server.manage("shell", "-c", code).stdout
    for line in out.splitlines():
        if line.startswith(marker + " "):
            return json.loads(line[len(marker) + 1 :])
    raise RuntimeError(f"no {marker} in:\n{out[-2000:]}")


def variants(project, cursor_page, cursor):
    jobs = f"/projects/{project}/jobs/"
    return [
        ("baseline: /cli/ (bare page)", "/cli/"),
        ("project jobs, no filter", jobs),
        ("project jobs, state=failed", jobs + "?state=failed"),
        ("project jobs, name=haplotype", jobs + "?name=haplotype"),
        ("project jobs, name=NA123 (rare)", jobs + "?name=NA123"),
        ("project jobs, name=nomatch", jobs + "?name=nomatch"),
        ("project jobs, tag=batch-07", jobs + "?tag=batch-07"),
        ("project jobs, tag=nonesuch", jobs + "?tag=nonesuch"),
        (f"project jobs, page {cursor_page}", jobs + "?" + urlencode({"cursor": cursor})),
        ("project jobs, origin only", jobs + "?origin=on"),
        ("my jobs", "/jobs/"),
        ("my jobs, state=failed", "/jobs/?state=failed"),
    ]


def run(quick=False, joblist_jobs=None, joblist_rounds=None, joblist_reps=None, redis=False, server_env=(), **_):
    n = joblist_jobs or (10000 if quick else 100000)
    rounds = joblist_rounds or (3 if quick else 8)
    reps = joblist_reps or (4 if quick else 8)
    page = min(500, max(2, n // 200))
    extra = {}
    if redis:
        extra = {"REDIS_URL": "redis://127.0.0.1:6379/7", "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres"}
    extra.update(dict(item.split("=", 1) for item in server_env))
    results = {
        "params": {
            "jobs": n,
            "rounds": rounds,
            "reps": reps,
            "page": page,
            "page_size": 100,
            "target_p95_ms": TARGET_P95_MS,
            "mode": "redis+postgres" if redis else "embedded",
            "server_env": list(server_env),
        }
    }
    with live_server(**extra) as server:
        for handle in USERS:
            server.user(handle)
        alice = Client(server)
        alice.headers["Authorization"] = f"Bearer {server.tokens['alice']}"
        project = alice("/project/new", {"name": "bench-joblist"})["id"]
        print(f"inserting {n} jobs ...", flush=True)
        t0 = time.time()
        seed = shell(
            server,
            SEED % {"params": json.dumps({"project": project, "n": n, "seed": 7, "pages": [page]})},
            "SEED-RESULT",
        )
        seed["wall_s"] = time.time() - t0
        results["seed"] = seed
        print(f"  {seed['n']} jobs in {seed['wall_s']:.1f} s (bulk_create {seed['insert_s']:.1f} s)", flush=True)
        cases = variants(project, page, seed["cursors"][str(page)])
        browser = Browser(server)
        browser.login("alice", "alice-password")
        samples = {name: [] for name, _ in cases}
        rows_on_page, page_kb = {}, {}
        for name, path in cases:  # warm-up, and check every page answers
            status, body = browser.request("GET", path)
            if status != 200:
                raise RuntimeError(f"{path}: {status} {body[:300]!r}")
            rows_on_page[name] = len(re.findall(rb'<tr data-job="', body))
            page_kb[name] = len(body) / 1024
        print(f"timing {len(cases)} variants x {rounds} rounds x {reps} ...", flush=True)
        for r in range(rounds):
            order = cases[r % len(cases) :] + cases[: r % len(cases)]
            for name, path in order:
                for _ in range(reps):
                    t = time.perf_counter()
                    status, _body = browser.request("GET", path)
                    samples[name].append(time.perf_counter() - t)
                    if status != 200:
                        raise RuntimeError(f"{path}: {status}")
        print("diagnosing in-process ...", flush=True)
        diag = shell(server, DIAGNOSE % {"params": json.dumps({"variants": cases, "reps": 3})}, "DIAG-RESULT")
    base = cases[0][0]

    def ms(name, q):
        return percentile(samples[name], q) * 1000

    out = []
    for name, path in cases:
        row = {
            "variant": name,
            "path": path,
            "n": len(samples[name]),
            "rows_on_page": rows_on_page[name],
            "page_kb": page_kb[name],
            "p50_ms": ms(name, 50),
            "p95_ms": ms(name, 95),
            "p99_ms": ms(name, 99),
            "ratio_p50": ms(name, 50) / ms(base, 50),
            "ratio_p95": ms(name, 95) / ms(base, 95),
            "met": ms(name, 95) <= TARGET_P95_MS,
            "in_process": diag.get(name),
        }
        out.append(row)
    results["variants"] = out
    results["met"] = all(v["met"] for v in out)
    return results


def report(results):
    rows = []
    for v in results["variants"]:
        d = v["in_process"] or {}
        rows.append(
            [
                v["variant"],
                str(v["rows_on_page"]),
                str(v["n"]),
                f"{v['p50_ms']:.1f}",
                f"{v['p95_ms']:.1f}",
                f"{v['p99_ms']:.1f}",
                f"{v['ratio_p50']:.2f}x",
                f"{v['ratio_p95']:.2f}x",
                "MET" if v["met"] else "MISSED",
                f"{d.get('queries', '-')}",
                f"{d['list_query_ms']:.1f}" if d.get("list_query_ms") is not None else "-",
                f"{d.get('total_ms', 0):.1f}",
            ]
        )
    print(
        table(
            [
                "variant",
                "rows",
                "n",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "p50 ratio",
                "p95 ratio",
                f"p95<={TARGET_P95_MS}",
                "queries",
                "list SQL ms",
                "in-proc ms",
            ],
            rows,
        )
    )
    s = results["seed"]
    print(f"{s['n']} jobs ({s['subjobs']} subjobs, {s['alice']} launched by alice); states {s['states']}")
    for v in results["variants"]:
        d = v["in_process"] or {}
        if d.get("plan") and not v["met"]:
            print(f"  {v['variant']}: list query {d['list_query_ms']:.1f} ms; plan: {' | '.join(d['plan'])}")


def main(**opts):
    results = run(**opts)
    report(results)
    suffix = (
        ("-redis" if opts.get("redis") else "")
        + ("-env" if opts.get("server_env") else "")
        + ("-quick" if opts.get("quick") else "")
    )
    print(f"results: {write_results('joblist' + suffix, results)}")
    return results
