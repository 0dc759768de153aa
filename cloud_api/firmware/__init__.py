"""Firmware distribution (spec §4.4): versions, storage, station tokens and the PROC-004 firmware_info."""
