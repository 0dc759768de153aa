"""Authentication: users and passwords, access and refresh tokens, sessions, and who may call each route."""
