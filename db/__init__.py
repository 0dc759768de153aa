"""Database schema: Alembic migrations and the helper that applies them."""
