"""The base every room stands on: settings (env + YAML), Kafka access and TLS, batches, the local Kafka.

It imports no room (collector, streams, dashboard, simulator) and not the composition root
(pioneer_telemetry): tests/test_architecture.py holds it to that.
"""
