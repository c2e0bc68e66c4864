"""`python -m consumer.sandbox [--port 8080 ...]`: same as `fulfillment-consumer sandbox`."""

from consumer.sandbox.cli import sandbox_command

if __name__ == "__main__":
    sandbox_command(prog_name="python -m consumer.sandbox")
