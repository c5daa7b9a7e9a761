"""The REST API of ``dagmill server`` (FastAPI): one router module per resource under
``routes/``, each handler a call to one :mod:`dagmill.services` function; request and
response bodies in ``schemas``; access tokens checked in ``auth``. Imported only by the
server: ``import dagmill`` and the CLI's other commands never load FastAPI.

The API root is ``/api/v1``; ``/openapi.json`` and ``/docs`` are at the server's root.
"""
