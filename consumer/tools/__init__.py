"""Operator and demo commands around the service: status, replay, redrive, demo, the warehouse
publisher and simulator. The service (member/ and below) never imports them."""
