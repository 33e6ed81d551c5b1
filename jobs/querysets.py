"""The one job query: which jobs a principal may see, matching which filters, page by page newest first.

The API's findJobs/findExecutions and the job list pages both ask it. Every filter is answered in SQL, and
reads only columns that the job list indexes hold (jobs_job_project_list_idx, jobs_job_launcher_list_idx:
project or launcher, -created, -id, name, tags, state, the other of project/launcher, origin), so a page's
ids come from an index alone. On PostgreSQL `tags` is not in them (btree entries are limited to ~2.7 kB):
its GIN index answers `@>` (migration 0006). A name contained goes through a trigram index first
(jobs.namesearch).
"""

import functools
import json
import operator
from typing import NamedTuple

from django.db import connection, models
from django.db.models import BooleanField, F, Func, Q

from dxweb.errors import InvalidInput
from projects.find import name_query
from projects.permissions import visible_container_ids

from .namesearch import jobs_named

TAGS_ERROR = '"tags" must be a string, an array, or {"$and"|"$or": [...]}'
PROPERTIES_ERROR = '"properties" must be a JSON object'


class Cursor(NamedTuple):
    """A place in the newest-first order of jobs: a job's `created` and its id (which breaks ties)."""

    created: int
    id: str

    @classmethod
    def of(cls, job):
        return cls(job.created, job.pk)


class HasTagSQLite(Func):
    """SQLite: the job's `tags` (a JSON list, stored as text) holds exactly `tag`, as `tags @> [tag]` on PostgreSQL.

    json_each() makes it exact: case-sensitive, and the stored text of a tag `say "hi` (`"say \\"hi"`) holds no
    tag `hi`, though it contains `"hi"`. A cheap instr() of `"tag"` (json.dumps writes a plain tag so) first
    skips the jobs that cannot match. Both read only `tags`, which the list indexes hold.
    """

    output_field = BooleanField()

    def __init__(self, tag):
        super().__init__(F("tags"))
        self.tag = tag

    def as_sql(self, compiler, connection, **extra_context):
        column, params = compiler.compile(self.source_expressions[0])
        exact = f"EXISTS (SELECT 1 FROM json_each({column}) WHERE json_each.value = %s)"
        needle = json.dumps(self.tag)
        if needle[1:-1] != self.tag:  # a tag that JSON escapes: no prefilter, json_each decodes it
            return f"({exact})", (*params, self.tag)
        return f"(instr({column}, %s) > 0 AND {exact})", (*params, needle, *params, self.tag)


class HasPropertySQLite(Func):
    """SQLite: the job's `properties` (a JSON object) has the key, holding the text `value` unless that is None.

    json_each() compares the key as it is: Django's key lookups would read a key like "1" as an array index.
    """

    output_field = BooleanField()

    def __init__(self, key, value=None):
        super().__init__(F("properties"))
        self.key, self.value = key, value

    def as_sql(self, compiler, connection, **extra_context):
        column, params = compiler.compile(self.source_expressions[0])
        if self.value is None:
            return f"EXISTS (SELECT 1 FROM json_each({column}) WHERE json_each.key = %s)", (*params, self.key)
        return (
            f"EXISTS (SELECT 1 FROM json_each({column}) WHERE json_each.key = %s AND json_each.type = 'text' "
            f"AND json_each.value = %s)"
        ), (*params, self.key, self.value)


def has_tag(tag):
    """A condition: the job's tags hold exactly `tag`."""
    if connection.features.supports_json_field_contains:
        return Q(tags__contains=[tag])
    if connection.vendor == "sqlite":
        return Q(HasTagSQLite(tag))
    return Q(tags__icontains=json.dumps(tag))  # no JSON containment: the tag, quotes included, in the stored text


def has_property(key, value=None):
    """A condition: the job has the property `key`, with the text `value` unless that is None."""
    if connection.vendor == "sqlite":
        return Q(HasPropertySQLite(key, value))
    return Q(properties__has_key=key) if value is None else Q(properties__contains={key: value})


# A tags or properties query translates to True (every job), False (none) or a Q: an empty "$and" holds for
# every job and an empty "$or" for none, as all() and any() answer, which Q() alone cannot say.


def _join(op, conditions):
    """The conditions joined by a query's "$and" (all of them hold) or "$or" (any of them does).

    True and False are answered as all() and any() answer them: the one that decides (False for "$and",
    True for "$or") decides the whole; the other is left out, and is the answer when nothing is left.
    """
    decides = op == "$or"
    conditions = list(conditions)
    if any(c is decides for c in conditions):
        return decides
    kept = [c for c in conditions if c is not (not decides)]
    if not kept:
        return not decides
    return functools.reduce(operator.or_ if decides else operator.and_, kept)


def tags_condition(query):
    """A find's `tags` (a tag, a list of them all wanted, or {"$and"|"$or": [...]}, nested) as a condition."""
    if isinstance(query, str):
        return has_tag(query)
    if isinstance(query, dict) and isinstance(query.get("$and"), list):
        return _join("$and", (tags_condition(q) for q in query["$and"]))
    if isinstance(query, dict) and isinstance(query.get("$or"), list):
        return _join("$or", (tags_condition(q) for q in query["$or"]))
    if isinstance(query, list):
        return _join("$and", (tags_condition(q) for q in query))
    raise InvalidInput(TAGS_ERROR)


def properties_condition(query):
    """A find's `properties` ({key: value, key: true|false, "$and"|"$or": [...]}) as a condition.

    A value stored is always text: a key asked for null is a key the job does not have, and one asked for a
    number, an array or an object matches no job.
    """
    if not isinstance(query, dict):
        raise InvalidInput(PROPERTIES_ERROR)
    conditions = []
    for key, want in query.items():
        if key in ("$and", "$or") and isinstance(want, list):
            parts = [properties_condition(q) for q in want]
            conditions.append(_join(key, parts))
        elif want is True:
            conditions.append(has_property(key))
        elif want is False or want is None:
            conditions.append(~has_property(key))
        elif isinstance(want, str):
            conditions.append(has_property(key, want))
        else:
            conditions.append(False)
    return _join("$and", conditions)


class JobQuerySet(models.QuerySet):
    """Chain: a scope (`within` or `visible_to`), filters, `newest_first().after(cursor)` or `page(...)`."""

    def within(self, name_contains="", **scope):
        """Jobs of a scope (field lookups on jobs_job's own columns: a project, a launcher, projects) whose
        name contains `name_contains`, any case. The scope comes with the name so that, where few jobs bear
        the name, its index can drive the query (jobs.namesearch)."""
        if name_contains:
            return jobs_named(self, name_contains, **scope)
        return self.filter(**scope)

    def visible_to(self, principal, name_contains="", **scope):
        """Jobs of every project the principal may see (within the scope, named so, as `within`)."""
        return self.within(name_contains, project_id__in=visible_container_ids(principal), **scope)

    def named(self, query):
        """Jobs whose name is a find's `name`: a string, {"glob"} or {"regexp"[, "flags"]}."""
        return self.filter(name_query(query))

    def in_state(self, *states):
        return self.filter(state=states[0]) if len(states) == 1 else self.filter(state__in=states)

    def tagged(self, query):
        """Jobs whose tags match a find's `tags` query (see tags_condition); a single tag is exact."""
        return self._matching(tags_condition(query))

    def with_properties(self, query):
        """Jobs whose properties match a find's `properties` query (see properties_condition)."""
        return self._matching(properties_condition(query))

    def launched_by(self, handle):
        """Jobs launched by the user with this handle (`user-` in front or not)."""
        return self.filter(launched_by__username=handle.removeprefix("user-"))

    def of_executable(self, executable_id):
        return self.filter(executable=executable_id)

    def created_between(self, after=None, before=None):
        """Jobs created at or after `after` and at or before `before` (milliseconds; None: unbounded)."""
        jobs = self if after is None else self.filter(created__gte=after)
        return jobs if before is None else jobs.filter(created__lte=before)

    def related(self, field, ids):
        """Jobs whose `field` (origin, root, parent or pk) is one of `ids`, or the id `ids`; None: no such job."""
        if ids is None:
            return self.filter(**{f"{field}__isnull": True})
        if isinstance(ids, list):
            return self.filter(**{f"{field}__in": ids})
        return self.filter(**{field: ids})

    def origins_only(self):
        """Jobs that are their own origin: no job launched them."""
        return self.filter(origin_id=F("pk"))

    def newest_first(self):
        return self.order_by("-created", "-pk")

    def after(self, cursor, inclusive=False):
        """Jobs past the cursor's place in newest-first order (or at it, when `inclusive`); None: all of them."""
        if cursor is None:
            return self
        same_time = (
            Q(created=cursor.created, pk__lte=cursor.id) if inclusive else Q(created=cursor.created, pk__lt=cursor.id)
        )
        # created__lte is implied by the OR, but spelled out it bounds the index range scanned.
        return self.filter(Q(created__lt=cursor.created) | same_time, created__lte=cursor.created)

    def page(self, size, cursor=None, inclusive=False):
        """The next `size` jobs newest first after the cursor, and one more when there is one (so the caller
        knows there is a next page): a queryset of whole rows, for select_related() and only().

        Two steps in one query: the page's ids, filtered and ordered in a list index that covers every
        filter, then only those rows, by primary key. The ids are the same ones, in the same order, as a
        single query would pick; but a filter that few jobs pass reads index entries, not rows.
        """
        ids = self.newest_first().after(cursor, inclusive).values("pk")[: size + 1]
        return self.model.objects.filter(pk__in=ids).newest_first()

    def _matching(self, condition):
        if condition is True:
            return self
        if condition is False:
            return self.none()
        return self.filter(condition)
