"""Adapters of the central side: database tables and queries."""
