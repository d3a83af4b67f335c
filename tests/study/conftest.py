"""The database fixtures (``store_url``, ``postgres_url``) live in tests/conftest.py."""
