"""ASGI entry for uvicorn workers: settings come from the environment of each worker process."""

from cloud_api.http.app import create_app

app = create_app()
