"""Log collection: files, protocols, producing to Kafka (the simulator has a room of its own: simulator/)."""
