"""Shared contract of the Withforce MES: route, numbering, payload models, topics and envelopes."""

CONTRACT_VERSION = "v1"
