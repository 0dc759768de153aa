"""Label API tests against a real emulated printer; one printer and stand-in station for the package (conftest)."""
