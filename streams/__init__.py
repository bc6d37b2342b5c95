"""The stream side: event schema, parsing, topics and aggregation."""
