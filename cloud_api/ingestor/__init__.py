"""MQTT adapter of the central side: consumes station messages, calls the use cases, answers after commit."""
