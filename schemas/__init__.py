"""JSON Schemas of docstreams messages, shipped in the wheel as the package `streams_schemas`."""
