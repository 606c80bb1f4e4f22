"""How every repository function of the ledger fetches a row by id, saves a row, and cuts the text it
stores: one way for all the tables (runs, disk backups, retention, restores, drills, shares). Saving
commits at once: the ledger is written before the cloud call it describes (see ``repository``).
"""

from __future__ import annotations

from typing import TypeVar

from sqlmodel import Session, SQLModel

from ..text import cut

__all__ = ["LedgerNotFoundError", "cut_text", "get_row", "save_row"]

# Error texts come from the cloud or our client; keep a row readable even when a job dumps a stack trace.
MAX_TEXT = 2000

T = TypeVar("T", bound=SQLModel)


class LedgerNotFoundError(LookupError):
    """A row that the caller refers to by id does not exist."""


def cut_text(text: str | None) -> str | None:
    """``text``, cut to :data:`MAX_TEXT` characters (an ellipsis marks the cut; its lines are kept)."""
    return None if text is None else cut(text, MAX_TEXT)


def get_row(session: Session, model: type[T], row_id: int) -> T:
    """The ``model`` row with id ``row_id``; :class:`LedgerNotFoundError` when there is none."""
    row = session.get(model, row_id)
    if row is None:
        raise LedgerNotFoundError(f"no {model.__name__} with id {row_id}")
    return row


def save_row(session: Session, row: T) -> T:
    """Add ``row``, commit, and return it as the database now holds it."""
    session.add(row)
    session.commit()
    session.refresh(row)
    return row
