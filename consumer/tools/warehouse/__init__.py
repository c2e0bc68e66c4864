"""The warehouse side: tools that play the warehouse, never imported by the service.

- `publisher`: JSON lines -> validated, encoded events -> Kafka, keyed by order id, idempotently.
- `simulator`: a seeded warehouse that ships and cancels order lines, with the ledger it should
  leave at Digital River, for tests, the demo and the benchmarks.
- `cli`: the `publish` and `simulate` commands; the only place Kafka and HTTP objects are built.
"""
