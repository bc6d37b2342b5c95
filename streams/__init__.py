"""The stream side: event schema, parsing, topics, aggregation (the Faust worker, streams/app.py) and its read API."""
