"""Benchmarks of the Withforce MES against real PostgreSQL, Mosquitto and Redis on loopback."""
