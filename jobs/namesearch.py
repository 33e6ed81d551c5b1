"""Substring search over job names ("Name contains" on the job lists) through a trigram index.

Without one, a name that few jobs of a project have, or none, is looked for in every entry of the
project's list index: ~100 ms for 100,000 jobs. With one, the database finds the few jobs whose names
hold every three-character piece of the text, then checks them.

- PostgreSQL: a GIN index over UPPER(name) with pg_trgm's operator class (migration 0007), which the
  planner uses by itself for `name__icontains`, or not when a name is so common that reading the list
  index in order reaches a page's end sooner. Where the extension cannot be created the migration says
  so and leaves it out; searches then scan, as before.
- SQLite: an FTS5 table with the trigram tokenizer (SQLite 3.34+), kept in step with jobs_job by
  triggers (migration 0007; `install_sqlite` below). `jobs_named` asks it how many jobs, in any
  project, hold the text: up to CANDIDATES, the list query keeps only those; more, it reads the list
  index in order as before, which soon finds a page's worth.

Either way `name__icontains` stays in the query: the index only narrows what is checked, the answer is
the same.
"""

import logging

from django.db import connection
from django.db.models import F, Func
from django.db.models.expressions import RawSQL

logger = logging.getLogger(__name__)

NAMES = "jobs_job_name"  # SQLite: (id INTEGER PRIMARY KEY, job_id UNIQUE, name); stable rowids
FTS = "jobs_job_name_fts"  # SQLite: FTS5 trigram index over NAMES (external content)
TRIGRAM_INDEX = "jobs_job_name_trgm"  # PostgreSQL: GIN (UPPER(name) gin_trgm_ops)
CANDIDATES = 500  # past this, reading the list index in order is the faster way

SQLITE_TRIGGERS = {
    # jobs_job → jobs_job_name
    "jobs_job_name_ai": f"AFTER INSERT ON jobs_job BEGIN "
    f"INSERT INTO {NAMES}(job_id, name) VALUES (new.id, new.name); END",
    "jobs_job_name_ad": f"AFTER DELETE ON jobs_job BEGIN DELETE FROM {NAMES} WHERE job_id = old.id; END",
    "jobs_job_name_au": f"AFTER UPDATE OF name ON jobs_job WHEN new.name IS NOT old.name BEGIN "
    f"UPDATE {NAMES} SET name = new.name WHERE job_id = new.id; END",
    # jobs_job_name → the FTS index (external content: it is told of every change)
    "jobs_job_name_fts_ai": f"AFTER INSERT ON {NAMES} BEGIN "
    f"INSERT INTO {FTS}(rowid, name) VALUES (new.id, new.name); END",
    "jobs_job_name_fts_ad": f"AFTER DELETE ON {NAMES} BEGIN "
    f"INSERT INTO {FTS}({FTS}, rowid, name) VALUES ('delete', old.id, old.name); END",
    "jobs_job_name_fts_au": f"AFTER UPDATE ON {NAMES} BEGIN "
    f"INSERT INTO {FTS}({FTS}, rowid, name) VALUES ('delete', old.id, old.name); "
    f"INSERT INTO {FTS}(rowid, name) VALUES (new.id, new.name); END",
}


def install_sqlite(schema_editor):
    """Create (or re-create) the SQLite name index and its triggers, filled from jobs_job.

    A later migration that makes SQLite remake jobs_job (most field changes do) drops the table's
    triggers with it: such a migration must call this again (tests/jobs/test_name_search.py notices).
    """
    execute = schema_editor.execute
    try:
        execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS}_probe USING fts5(x, tokenize='trigram')")
        execute(f"DROP TABLE {FTS}_probe")
    except Exception as err:  # an SQLite without FTS5 or its trigram tokenizer (before 3.34)
        logger.warning("Job name search will scan: this SQLite has no FTS5 trigram tokenizer (%s)", err)
        return False
    remove_sqlite(schema_editor)
    execute(f"CREATE TABLE {NAMES} (id INTEGER PRIMARY KEY, job_id varchar(64) NOT NULL UNIQUE, name text NOT NULL)")
    execute(f"CREATE VIRTUAL TABLE {FTS} USING fts5(name, content='{NAMES}', content_rowid='id', tokenize='trigram')")
    for name, body in SQLITE_TRIGGERS.items():
        execute(f"CREATE TRIGGER {name} {body}")
    execute(f"INSERT INTO {NAMES}(job_id, name) SELECT id, name FROM jobs_job")  # the FTS trigger indexes them
    return True


def remove_sqlite(schema_editor):
    for name in SQLITE_TRIGGERS:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}")
    schema_editor.execute(f"DROP TABLE IF EXISTS {FTS}")
    schema_editor.execute(f"DROP TABLE IF EXISTS {NAMES}")


_ready = {}


def sqlite_index_ready():
    """Whether this database has the FTS table and every trigger that keeps it true (checked once)."""
    key = connection.settings_dict["NAME"]
    if key not in _ready:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger') AND name LIKE %s", ["jobs_job_name%"]
            )
            present = {row[0] for row in cursor.fetchall()}
        missing = ({NAMES, FTS} | set(SQLITE_TRIGGERS)) - present
        if missing:
            logger.warning("Job name search will scan: %s missing from the database", ", ".join(sorted(missing)))
        _ready[key] = not missing
    return _ready[key]


def jobs_named(jobs, text, **scope):
    """The jobs of `jobs` in the scope (field lookups on jobs_job's own columns) whose name contains text, any case."""
    named = jobs.filter(name__icontains=text)
    if connection.vendor != "sqlite" or len(text) < 3 or any(c in text for c in "%_\\") or not sqlite_index_ready():
        # PostgreSQL's planner picks its trigram index itself; under three characters no trigram
        # narrows anything; LIKE's wildcards in the text: the plain LIKE handles them.
        return named.filter(**scope)
    pattern = f"%{text}%"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {FTS} WHERE name LIKE %s LIMIT %s)", [pattern, CANDIDATES + 1]
        )
        (found,) = cursor.fetchone()
    if found > CANDIDATES:
        return named.filter(**scope)  # common: the list index, read in order, soon fills a page
    # Few jobs anywhere hold the text: they drive the query, by primary key. Without statistics SQLite
    # would rather walk the list index of the scope's first column and test every entry against them;
    # a unary plus keeps the scope's terms out of its choice of index (a no-op on the values).
    unindexed, lookups = {}, {}
    for key, value in scope.items():
        column, _, lookup = key.partition("__")
        alias = f"{column}_unindexed"
        unindexed[alias] = Func(
            F(column), template="+%(expressions)s", output_field=jobs.model._meta.get_field(column).target_field
        )
        lookups[f"{alias}__{lookup}" if lookup else alias] = value
    ids = RawSQL(f"SELECT n.job_id FROM {FTS} f JOIN {NAMES} n ON n.id = f.rowid WHERE f.name LIKE %s", [pattern])
    return named.alias(**unindexed).filter(pk__in=ids, **lookups)
