"""What operators watch: structured logging, Prometheus metrics, /healthz and /readyz."""
