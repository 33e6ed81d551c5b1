"""The job lists' covering indexes (jobs.views.filtered_jobs / keyset_page).

They replace (project, -created) and (launched_by, -created), which they extend: a page's ids are found in
the index alone, whatever the filters (name, tag, state, launcher, origin, dates), so a search for a name or
tag that few jobs have scans small index entries rather than the wide job rows.

The model's state has `tags` in both. The database differs on PostgreSQL: a btree entry must stay under
~2.7 kB and a job may carry 100 tags of 256 characters, so there `tags` is left out of both and gets a GIN
index (jsonb_path_ops, plain PostgreSQL, no extension) for `tags @> '["tag"]'`. The names are the same on
both engines, so a later RemoveIndex works on either.

Also on PostgreSQL, statistics on UPPER(name), what `name__icontains` compares: without them the planner
guesses that a few jobs match any name search, so for a common one ("haplotype": 3 % of jobs) it scans the
whole project and sorts rather than read the list index in order and stop at the page's end (87 ms → 3 ms
for 100,000 jobs). Both are created by the owner of the table, as indexes are: no extension, no superuser.
"""
from django.db import migrations, models

LIST_INDEXES = [
    models.Index(fields=["project", "-created", "-id", "name", "tags", "state", "launched_by", "origin"],
                 name="jobs_job_project_list_idx"),
    models.Index(fields=["launched_by", "-created", "-id", "project", "name", "tags", "state", "origin"],
                 name="jobs_job_launcher_list_idx"),
]
TAGS_GIN = "jobs_job_tags_gin"
NAME_STATS = "jobs_job_upper_name_stats"


def database_indexes(vendor):
    if vendor != "postgresql":
        return LIST_INDEXES
    return [models.Index(fields=[f for f in index.fields if f != "tags"], name=index.name) for index in LIST_INDEXES]


def add_indexes(apps, schema_editor):
    job = apps.get_model("jobs", "Job")
    vendor = schema_editor.connection.vendor
    for index in database_indexes(vendor):
        schema_editor.add_index(job, index)
    if vendor == "postgresql":
        quote, table = schema_editor.quote_name, schema_editor.quote_name(job._meta.db_table)
        schema_editor.execute(f"CREATE INDEX {quote(TAGS_GIN)} ON {table} USING gin (tags jsonb_path_ops)")
        schema_editor.execute(f"CREATE STATISTICS {quote(NAME_STATS)} ON (UPPER(name::text)) FROM {table}")


def remove_indexes(apps, schema_editor):
    job = apps.get_model("jobs", "Job")
    vendor = schema_editor.connection.vendor
    for index in database_indexes(vendor):
        schema_editor.remove_index(job, index)
    if vendor == "postgresql":
        schema_editor.execute(f"DROP STATISTICS IF EXISTS {schema_editor.quote_name(NAME_STATS)}")
        schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(TAGS_GIN)}")


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0005_notifications"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="job", name="jobs_job_project_059211_idx"),
        migrations.RemoveIndex(model_name="job", name="jobs_job_launche_1f40f0_idx"),
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="job", index=index) for index in LIST_INDEXES],
            database_operations=[migrations.RunPython(add_indexes, remove_indexes)],
        ),
    ]
