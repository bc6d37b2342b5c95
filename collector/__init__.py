"""Log collection: files, protocols, producing to Kafka; the log simulator."""
