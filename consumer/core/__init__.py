"""The pure core: values and decisions, no IO.

Events, validation, per-order lanes and coalescing, request bodies, outcome classification,
reconciliation, the dispatch log and the watermark, the rate budget, the breaker, the lease, the
dedupe filter and the error tree. Nothing here imports Kafka, HTTP, Avro, logging or a clock: time
comes in as a `now` argument. import-linter refuses any IO library here, directly or indirectly.
"""
