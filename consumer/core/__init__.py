"""The pure core: values and decisions, no IO.

Events, validation, per-order lanes and coalescing, request bodies, the decision vocabulary
(decisions.py) and how answers map onto it (outcomes.py), reconciliation, what a decision does
to a partition (settle.py), the dispatch log and the watermark, the rate budget, the breaker,
the lease, the dedupe filter and the error tree (errors.py). Nothing here imports Kafka, HTTP,
Avro, logging or a clock: time comes in as a `now` argument. import-linter refuses any IO
library here, directly or indirectly.
"""
