"""The ledger from the command line: `vbs-backup report` (recent runs and, per disk, its newest good
backup) and `vbs-backup ledger upgrade|version` (the schema's migrations). No Prefect.

    vbs-backup report [--limit 10] [--target NAME ...] [--database-url URL]
    vbs-backup ledger upgrade|version [--database-url URL]

`report --target NAME` (repeatable) shows only the runs, and the disks, of those targets of an estate;
a name the ledger has no run of shows nothing and exits 2 ("no runs of target NAME in the ledger").
"""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["ledger_app", "report"]

LedgerUrlOption = Annotated[
    str | None, typer.Option(help="Ledger URL (default: VBS_BACKUP_DATABASE_URL or the local SQLite file).")
]


def report(
    limit: Annotated[int, typer.Option(min=1, help="How many recent runs to show.")] = 10,
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            metavar="NAME",
            help="Only the runs and disks of this estate target (repeat for several). Exit 2 if the ledger "
            "has no run of one.",
        ),
    ] = None,
    database_url: LedgerUrlOption = None,
) -> None:
    """Recent runs, each with its kind (nightly, on demand, retention, direct), and, per protected disk,
    the age of its newest good backup; with a `target` column when the ledger holds an estate's runs."""
    from rich.console import Console
    from sqlmodel import Session

    from vbs_backup.ledger import init_db, make_engine, run_targets
    from vbs_backup.reporting import protection_table, runs_table
    from vbs_backup.settings import Settings

    url = database_url or Settings().database_url
    engine = make_engine(url)
    init_db(engine)
    targets = list(dict.fromkeys(target)) if target else None
    if targets is not None:
        with Session(engine) as session:
            known = set(run_targets(session=session))
        unknown = [name for name in targets if name not in known]
        if unknown:
            # Nothing shown: a misspelt name must not pass for a target that is all right.
            for name in unknown:
                typer.echo(f"no runs of target {name} in the ledger", err=True)
            if known:
                typer.echo(f"(the ledger has runs of: {', '.join(sorted(known))})", err=True)
            raise typer.Exit(2)
    console = Console()
    console.print(runs_table(engine, limit=limit, targets=targets))
    # Per disk, the ledger's protection_status: the same facts the watchdog's protection view starts from
    # (where the watchdog can read the cloud, the cloud's newest good backup replaces the ledger's).
    console.print(protection_table(engine, targets=targets))


ledger_app = typer.Typer(help="The ledger database: schema revision and migrations.", no_args_is_help=True)


def _ledger_settings(database_url: str | None):
    from vbs_backup.settings import Settings

    return Settings() if database_url is None else Settings(database_url=database_url)


def _ledger_failed(where: str, exc: Exception) -> typer.Exit:
    # One line, not a traceback: the database's own message (a DBAPIError's `orig`), never the URL.
    typer.echo(f"{where}: {getattr(exc, 'orig', None) or exc}", err=True)
    return typer.Exit(1)


@ledger_app.command("upgrade")
def ledger_upgrade(database_url: LedgerUrlOption = None) -> None:
    """Migrate the ledger to this version's schema (every run also does it at start). Exit 1 if that
    fails, or if the ledger was written by a newer vbs-backup."""
    from sqlalchemy.exc import SQLAlchemyError

    from vbs_backup.ledger import LedgerVersionError, make_engine, upgrade_ledger

    settings = _ledger_settings(database_url)
    where = f"ledger {settings.database_url_redacted()}"  # never the password
    engine = make_engine(settings.database_url)
    try:
        old, new = upgrade_ledger(engine)
    except (LedgerVersionError, SQLAlchemyError) as exc:
        raise _ledger_failed(where, exc) from None
    finally:
        engine.dispose()
    if old == new:
        typer.echo(f"{where}: already at revision {new}")
    elif old is None:
        typer.echo(f"{where}: created at revision {new}")
    else:
        typer.echo(f"{where}: migrated from revision {old} to {new}")


@ledger_app.command("version")
def ledger_version(database_url: LedgerUrlOption = None) -> None:
    """Show the ledger's schema revision and the one this vbs-backup writes (reads only)."""
    from sqlalchemy.exc import SQLAlchemyError

    from vbs_backup.ledger import ledger_head, ledger_revision, make_engine

    settings = _ledger_settings(database_url)
    where = f"ledger {settings.database_url_redacted()}"
    engine = make_engine(settings.database_url)
    try:
        current = ledger_revision(engine)
    except SQLAlchemyError as exc:
        raise _ledger_failed(where, exc) from None
    finally:
        engine.dispose()
    head = ledger_head()
    typer.echo(f"{where}: revision {current or 'none'}, this vbs-backup writes {head}")
    if current != head:
        typer.echo("`vbs-backup ledger upgrade` (or the next run) migrates it, unless newer code wrote it")
