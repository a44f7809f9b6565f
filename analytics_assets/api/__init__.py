"""The read API over the MongoDB collections (FastAPI): `create_app()`."""
