"""Grafana dashboards as code (issue 16): panels.py holds the dashboards, build.py writes their JSON."""
