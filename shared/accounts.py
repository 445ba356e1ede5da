"""Refusing an erased partner's token. A token outlives its account by up to its
lifetime, and every service verifies tokens on its own: each one also asks its
own tombstone (the ``erased`` flag its events set) and refuses the token, 401,
as the journal does."""

from __future__ import annotations

import functools
from collections.abc import Callable

from flask import g
from sqlalchemy import Column, bindparam, select

from shared.errors import Unauthorized
from shared.web import require_auth


def require_account(unit_of_work: Callable, erased: Column) -> Callable:
    """A view decorator: a valid token of a partner who has not been erased.
    ``unit_of_work``: opens the service's transaction; ``erased``: its
    tombstone column, on a table keyed by the partner's ``id``."""
    lookup = select(erased).where(erased.table.c.id == bindparam("pid"))  # built once

    def decorate(view):
        @require_auth
        @functools.wraps(view)
        def checked(*args, **kwargs):
            with unit_of_work() as s:
                gone = s.execute(lookup, {"pid": g.partner_id}).scalar()
            if gone:
                raise Unauthorized("This account no longer exists.")
            return view(*args, **kwargs)

        return checked

    return decorate
