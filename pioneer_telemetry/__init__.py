"""pioneer-telemetry: glue shared by all components (settings base, Kafka connection, local broker, CLI)."""

__version__ = "0.1.0"
