"""The Kafka adapter: the only package that imports confluent-kafka.

Consumer, producers, side topics (dead letters, parking, the applied-events changelog), the admin
calls the operator tools share, and Confluent's Schema Registry client. Kafka's errors become ours.
"""
