"""fulfillment-consumer: warehouse shipment and cancellation events -> Digital River fulfillments.

The folders are the layers (docs/architecture.md): `core` (pure decisions), `config`, the adapters
`codec`, `kafka` and `digitalriver`, `ops`, `member` (the loop) and `tools`. One record's journey:

    kafka.source (consume) -> member.intake -> codec.avro (Avro -> events)
      -> core.lanes (per-order queues, coalescing) -> core.commit_plan (listed as unsure first)
      -> digitalriver.delivery (core.fulfillments body, POST, core.outcomes -> core.decisions)
      -> core.settle (what the decision does) -> kafka.changelog, core.watermark
      -> core.commit_plan -> kafka.source (commit)

`member/engine.py` is the only module that knows the order of those steps; `cli.py` builds the
real adapters and wires them.
"""

__version__ = "0.1.0"
