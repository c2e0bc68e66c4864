"""One error tree: every error the package defines is in it, and carries its context."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import consumer
from consumer.core import errors
from consumer.core.errors import (
    BadInput,
    ConfigurationError,
    FailureKind,
    FulfillmentConsumerError,
    InfrastructureError,
    LeaseEnded,
    RetryableFailure,
    SchemaNotFetched,
    TopicMissingError,
    TransportFailure,
)

# click's own way to show a ConfigurationError as a usage error (exit 2); not ours to classify
OUTSIDE_BY_DESIGN = {"consumer.tools.options.BadSetting"}


def defined_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class defined in the service's modules (the sandbox has its own)."""
    found: dict[str, type[BaseException]] = {}
    for module_info in pkgutil.walk_packages(consumer.__path__, "consumer."):
        if module_info.name.startswith(("consumer.sandbox", "consumer.__main__")):
            continue
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found[f"{module.__name__}.{name}"] = value
    return found


def test_every_error_the_service_defines_is_in_the_tree() -> None:
    outside = {
        name
        for name, cls in defined_exceptions().items()
        if not issubclass(cls, FulfillmentConsumerError)
    }
    assert outside == OUTSIDE_BY_DESIGN


def test_every_error_of_the_tree_is_drawn_in_its_docstring() -> None:
    tree = errors.__doc__ or ""
    for name, cls in vars(errors).items():
        if inspect.isclass(cls) and issubclass(cls, FulfillmentConsumerError):
            assert name in tree, name


def test_what_to_retry_is_told_apart_from_what_to_dead_letter_and_what_stops() -> None:
    for retry_later in (TransportFailure, LeaseEnded, SchemaNotFetched, InfrastructureError):
        assert issubclass(retry_later, RetryableFailure)
        assert not issubclass(retry_later, BadInput | ConfigurationError)
    assert issubclass(TopicMissingError, ConfigurationError)
    assert not issubclass(BadInput, RetryableFailure | ConfigurationError)


def test_a_failure_carries_its_context_as_values() -> None:
    failure = RetryableFailure(
        "GET /fulfillments answered 429", status=429, retry_after=2.0, code="too_many_requests"
    )
    failure.order_id = "ord_1"
    assert failure.context() == {
        "order_id": "ord_1",
        "status": 429,
        "code": "too_many_requests",
        "retry_after": 2.0,
    }


def test_only_a_failure_to_connect_proves_nothing_reached_digital_river() -> None:
    assert not TransportFailure("connect", "ConnectError").may_have_applied
    kinds: tuple[FailureKind, ...] = ("timeout", "reset", "protocol")
    for kind in kinds:
        failure = TransportFailure(kind, "x")
        assert failure.may_have_applied
        assert failure.context()["kind"] == kind


def test_a_configuration_error_names_its_setting_in_the_message_and_as_a_value() -> None:
    refused = ConfigurationError(
        "Digital River refused the key (401)", setting="DR_API_KEY", status=401
    )
    assert str(refused) == "DR_API_KEY: Digital River refused the key (401)"
    assert refused.context() == {"setting": "DR_API_KEY", "status": 401}
    missing = TopicMissingError("orders", setting="FULFILLMENT_TOPIC")
    assert (missing.topic, missing.setting) == ("orders", "FULFILLMENT_TOPIC")


def test_bad_input_keeps_its_reason_and_field_apart() -> None:
    bad = BadInput("must be >= 1", field="items[0].quantity")
    assert str(bad) == "items[0].quantity: must be >= 1"
    assert (bad.reason, bad.field) == ("must be >= 1", "items[0].quantity")
