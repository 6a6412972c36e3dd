"""docstreams: Kafka stream-processing consumers that turn documents into searchable chunks."""

__version__ = "0.1.0"
