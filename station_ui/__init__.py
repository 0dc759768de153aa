"""The operator's station window (ttkbootstrap): scanner-first starts and what the station is doing.

It talks only to its station's gateway on loopback (edge_gateway/local_api.py, window_api.py); no database, no
broker. Tk-free parts (scan, texts, presenter, config, gateway_client) are unit-tested without a display.
"""
