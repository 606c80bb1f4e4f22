"""The ledger's Alembic migrations (``env.py``, ``versions/``), applied by
:func:`vbs_backup.ledger.engine.init_db` at every start and by ``vbs-backup ledger upgrade``.

There is no ``alembic.ini``: the configuration is built in code (``engine.alembic_config``). A schema change
is a new file in ``versions/``; to draft one, change the models, then compare them with an empty scratch
database brought to the current head by the migrations (not by ``init_db``, which creates from the models)::

    from alembic import command
    from vbs_backup.ledger.engine import alembic_config, ledger_metadata, make_engine

    with make_engine("sqlite:///scratch.sqlite").begin() as conn:
        config = alembic_config(conn, ledger_metadata())
        command.upgrade(config, "head")
        command.revision(config, "what changed", autogenerate=True, rev_id="0003")

then write the data migration by hand, and check the ``batch_alter_table`` blocks (SQLite copies tables).
"""
