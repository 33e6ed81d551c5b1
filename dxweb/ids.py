"""Object IDs as the dx client checks them: `<class>-` followed by 24 characters."""

import re
import secrets
import string

ALPHABET = string.digits + string.ascii_letters
ID_CLASSES = (
    "project",
    "container",
    "file",
    "record",
    "applet",
    "workflow",
    "database",
    "job",
    "analysis",
    "app",
    "globalworkflow",
)
# The 24 characters after `<class>-`; URL patterns match IDs with id_pattern().
ID_BODY = r"[0-9A-Za-z]{24}"
ID_RE = re.compile(rf"^({'|'.join(ID_CLASSES)})-{ID_BODY}$")
HANDLE_RE = re.compile(r"^[a-z0-9][a-z0-9._]{0,62}$")


def new_id(cls):
    """Return a fresh random ID of the given class."""
    return f"{cls}-" + "".join(secrets.choice(ALPHABET) for _ in range(24))


def id_pattern(cls, group):
    """A regex matching an ID of class `cls`, captured as `group`."""
    return rf"(?P<{group}>{cls}-{ID_BODY})"


def id_class(value):
    """Return the class of a well-formed object ID, or None."""
    if isinstance(value, str) and ID_RE.match(value):
        return value.split("-", 1)[0]
    return None
