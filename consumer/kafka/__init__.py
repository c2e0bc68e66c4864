"""The Kafka adapter: the only package that imports confluent-kafka (import-linter checks it).

- `configs`: every client's config; the one filter of passthrough keys per kind of client.
- `source`: a group member's consumer. `records`: records and committed offsets as ours.
- `writer`: the one producer adapter (side topics, redrive, the warehouse publisher).
- `reader`: the one loop that reads partitions to their end.
- `admin`: topics, the group and its offsets, for the operator tools and the member.
- `coordinator`: group-coordinator calls that ride out its moves (`core.coordinator_retry`).
- `thread`: the member's one Kafka thread. `changelog`: the applied-events changelog.
- `schema_registry`: Confluent's Schema Registry client.

Kafka's errors become ours (`consumer.core.errors`).
"""
