"""The HTTP sending API (layer L5): an ASGI application (FastAPI) over the one pipeline.

May import: L0-L4. Served by ``serve.http`` (uvicorn) on the HTTP listener.
"""
