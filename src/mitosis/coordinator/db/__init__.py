"""Tables, engine/session set-up, dialect helpers and Alembic migrations."""
