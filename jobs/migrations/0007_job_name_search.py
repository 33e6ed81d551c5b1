"""A trigram index for "Name contains" on the job lists (jobs.namesearch).

PostgreSQL: the pg_trgm extension (a trusted extension since PostgreSQL 13: a database owner may create
it) and a GIN index over UPPER(name), what `name__icontains` compares. Where the extension cannot be
created (not installed, no privilege), the migration warns and goes on without the index.
SQLite: an FTS5 trigram table kept in step by triggers (jobs.namesearch.install_sqlite).
"""
import logging

from django.db import DatabaseError, migrations, transaction

from jobs import namesearch

logger = logging.getLogger("jobs.namesearch")


def add(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        namesearch.install_sqlite(schema_editor)
        return
    if vendor != "postgresql":
        return
    try:
        with transaction.atomic(using=schema_editor.connection.alias):  # a savepoint: a refusal is not fatal
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DatabaseError as err:
        logger.warning("Job name search will scan: the pg_trgm extension cannot be created (%s). "
                       "A superuser can run CREATE EXTENSION pg_trgm, then: python manage.py migrate jobs 0006 "
                       "&& python manage.py migrate", str(err).strip())
        return
    schema_editor.execute(f"CREATE INDEX {schema_editor.quote_name(namesearch.TRIGRAM_INDEX)} ON "
                          f"{schema_editor.quote_name('jobs_job')} USING gin ((UPPER(name::text)) gin_trgm_ops)")


def remove(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        namesearch.remove_sqlite(schema_editor)
    elif vendor == "postgresql":  # the extension stays: other things may use it
        schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(namesearch.TRIGRAM_INDEX)}")


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0006_job_list_indexes"),
    ]

    operations = [
        migrations.RunPython(add, remove),
    ]
