"""Bytes <-> events: Avro single-object encoding and Confluent framing (fastavro), schemas, JSON."""
