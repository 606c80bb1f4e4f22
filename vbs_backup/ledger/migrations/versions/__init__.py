"""Migration scripts, loaded by Alembic from their files (never imported as a package)."""
