"""fulfillment-consumer: warehouse shipment and cancellation events -> Digital River fulfillments.

Read the package top to bottom as the journey of one record:

    kafka_io (poll) -> codec (Avro -> events) -> lanes (per-order queues, coalescing)
      -> fulfillments (request body) -> digitalriver (POST)
      -> outcomes (applied / retry / park / stop)
      -> watermark (settled offsets -> committable offset) -> kafka_io (commit)

`engine` is the only module that knows the order of those steps; `cli` builds and wires the objects.
"""

__version__ = "0.1.0"
