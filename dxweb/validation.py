"""Small checks for API bodies: each failure is an InvalidInput naming the field."""

from .errors import InvalidInput

_MISSING = object()
# Integers go into 64-bit database columns.
MAX_INT = 2**63 - 1

TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    dict: "a JSON object",
    list: "an array",
    type(None): "null",
}


def _describe(types):
    return " or ".join(TYPE_NAMES.get(t, t.__name__) for t in types)


def _matches(value, types):
    if isinstance(value, bool) and bool not in types:
        return False
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


def get(body, key, types, default=_MISSING):
    """Return body[key] checked against `types`; a missing key gives `default` or an error."""
    if not isinstance(types, tuple):
        types = (types,)
    if key not in body:
        if default is _MISSING:
            raise InvalidInput(f'Expected input to have property "{key}"', field=key)
        return default
    value = body[key]
    if not _matches(value, types):
        raise InvalidInput(f'Expected key "{key}" of input to be {_describe(types)}', field=key)
    if isinstance(value, int) and not isinstance(value, bool) and not -MAX_INT <= value <= MAX_INT:
        raise InvalidInput(f'The value of "{key}" is out of range', field=key)
    return value


def string_list(body, key, default=_MISSING):
    """Return a list of strings at body[key]."""
    value = get(body, key, list, default)
    if value is default:
        return value
    if not all(isinstance(v, str) for v in value):
        raise InvalidInput(f'Expected key "{key}" of input to be an array of strings', field=key)
    return value


def string_map(body, key, nullable=False, default=_MISSING):
    """Return a {string: string} map at body[key] (values may be null when `nullable`)."""
    value = get(body, key, dict, default)
    if value is default:
        return value
    for v in value.values():
        if not (isinstance(v, str) or (nullable and v is None)):
            raise InvalidInput(
                f'Expected each value of "{key}" to be a string' + (" or null" if nullable else ""), field=key
            )
    return value
