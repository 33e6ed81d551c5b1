"""One transaction for a whole API call that creates something, and atomic blocks that need no savepoint in it.

The dispatcher (dxweb/api.py) runs /<class>/new and /<id>/run, token lookup included, in one transaction:
each transaction is a commit the database must make (bench jobs counts them). Inside it, an action's own
atomic block would be a savepoint (two more round trips) that nothing needs: an error there ends the
whole call, whose transaction is rolled back. Actions the API calls mark their block with `atomic`
below; called from elsewhere (a page, a worker), they keep their savepoint when nested.
"""

import contextvars
from contextlib import contextmanager
from functools import wraps

from django.db import transaction

_in_call = contextvars.ContextVar("dxweb_call_transaction", default=False)


@contextmanager
def call_transaction():
    """The transaction of one whole API call: an error anywhere in it rolls all of it back."""
    with transaction.atomic():
        token = _in_call.set(True)
        try:
            yield
        finally:
            _in_call.reset(token)


def atomic(fn):
    """transaction.atomic, without a savepoint inside call_transaction() (whose errors end it all)."""

    @wraps(fn)
    def inner(*args, **kwargs):
        with transaction.atomic(savepoint=not _in_call.get()):
            return fn(*args, **kwargs)

    return inner
