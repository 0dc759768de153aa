"""Station edge gateway: completion-file pickup, start relay and the MQTT link to the central ingestor."""
