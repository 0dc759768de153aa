"""REST adapter: FastAPI application, routes and the error mapping."""
