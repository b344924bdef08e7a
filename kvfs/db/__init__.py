"""Database backends: SQL databases through SQLAlchemy 2 in :mod:`kvfs.db.sql`."""
