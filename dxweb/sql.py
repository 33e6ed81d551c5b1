"""Hand-written SQL for the few queries that every API call makes.

Building a query with the ORM (filter, then compiling it to SQL) costs 0.5-1 ms of Python per
query, several times what SQLite or PostgreSQL takes to answer it; the token lookup and the
permission check run on every API call (bench/README.md). The helpers here select a model's
concrete columns and turn a row back into an instance as the ORM does (the fields' database
converters, then `Model.from_db`), so that the instances behave as ORM-loaded ones (saving,
lazy relations...).

Values are always passed as query parameters, never formatted into the SQL; only table and
column names (from the models' metadata) are. The SQL is standard (SQLite and PostgreSQL).
"""

import time

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import BigIntegerField, Expression


def name(model, field=None):
    """The quoted table name of a model, or the quoted column of one of its fields."""
    if field is None:
        return connection.ops.quote_name(model._meta.db_table)
    return connection.ops.quote_name(model._meta.get_field(field).column)


class Columns:
    """A model's concrete columns under a table alias in a SELECT, and how to load them back."""

    def __init__(self, model, alias):
        self.model = model
        self.alias = alias
        self.fields = model._meta.concrete_fields
        self.names = [f.attname for f in self.fields]
        self.width = len(self.fields)
        self._converters = {}

    @property
    def sql(self):
        quote = connection.ops.quote_name
        return ", ".join(f"{self.alias}.{quote(f.column)}" for f in self.fields)

    def converters(self, conn):
        """[(position, expression, [converter...])] for this database, as the ORM's compiler finds them."""
        found = self._converters.get(conn.vendor)
        if found is None:
            found = []
            for pos, field in enumerate(self.fields):
                col = field.get_col(self.alias)
                convs = conn.ops.get_db_converters(col) + col.get_db_converters(conn)
                if convs:
                    found.append((pos, col, convs))
            self._converters[conn.vendor] = found
        return found

    def load(self, row, start=0):
        """The instance held in row[start:start + width]."""
        conn = connections[DEFAULT_DB_ALIAS]
        values = list(row[start : start + self.width])
        for pos, col, convs in self.converters(conn):
            value = values[pos]
            for convert in convs:
                value = convert(value, col, conn)
            values[pos] = value
        return self.model.from_db(DEFAULT_DB_ALIAS, self.names, values)


def fetch(sql, params):
    """All rows of a query, as tuples."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def chunks(items, size):
    """`items` as lists of at most `size`: for reads of many IDs a statement at a time (SQLite takes
    only so many parameters, or ORed conditions, in one)."""
    items = list(items)
    return [items[i : i + size] for i in range(0, len(items), size)]


def placeholders(n):
    """`%s, %s, ...`: n parameters' placeholders, for an IN (...) or a VALUES (...) list."""
    return ", ".join(["%s"] * n)


# The database's clock, in ms since the epoch. Leases are written and judged by it: a worker host's
# heartbeat and the beat host's reaper then share one clock, however far their own drift apart.
NOW_SQL = {
    "postgresql": "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    "sqlite": "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
}


class DatabaseNow(Expression):
    """The database's clock (ms), as a value in an update or a filter: `.update(heartbeat=DatabaseNow())`."""

    output_field = BigIntegerField()

    def as_sql(self, compiler, conn, **extra):
        return NOW_SQL[conn.vendor], []


def database_now_ms():
    """The database's clock (ms). SQLite's is this host's (the database is a file here): no query."""
    if connection.vendor == "sqlite":
        return int(time.time() * 1000)
    return fetch(f"SELECT {NOW_SQL[connection.vendor]}", [])[0][0]
