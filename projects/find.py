"""What every /system/find* method reads the same way: its `limit`, `name` and `describe` inputs."""

import re

from django.db.models import Q

from dxweb.errors import InvalidInput
from dxweb.validation import get

MAX_LIMIT = 1000


def page_limit(body):
    """Return a find's `limit`: at most MAX_LIMIT, the most when missing; refuse one below 1."""
    limit = get(body, "limit", int, MAX_LIMIT)
    if limit < 1:
        raise InvalidInput('"limit" must be a positive integer')
    return min(limit, MAX_LIMIT)


def name_query(query, field="name"):
    """Turn a find's `name` (a string, {"glob"} or {"regexp"[, "flags"]}) into a Q on `field`."""
    if isinstance(query, str):
        return Q(**{field: query})
    if isinstance(query, dict) and isinstance(query.get("glob"), str):
        pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in query["glob"])
        return Q(**{f"{field}__regex": f"^{pattern}$"})
    if isinstance(query, dict) and isinstance(query.get("regexp"), str):
        try:
            re.compile(query["regexp"])
        except re.error as exc:
            raise InvalidInput(f'"name.regexp" is not a valid regular expression: {exc}') from None
        flags = query.get("flags", "")
        lookup = "iregex" if isinstance(flags, str) and "i" in flags else "regex"
        return Q(**{f"{field}__{lookup}": query["regexp"]})
    raise InvalidInput('"name" must be a string, {"glob": ...} or {"regexp": ...}')


def describe_input(body):
    """Return (wanted, describe options) from a find's `describe` input."""
    spec = body.get("describe", False)
    if spec is True:
        return True, {}
    if isinstance(spec, dict):
        return True, spec
    if spec is False or spec is None:
        return False, {}
    raise InvalidInput('"describe" must be a boolean or a JSON object')
