"""Central side of the MES: domain, use cases, the REST API and the MQTT ingestor."""
