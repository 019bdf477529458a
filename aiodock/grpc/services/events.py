"""containerd.services.events.v1.Events: Publish, Forward (from shims) and Subscribe (`ctr events`).

Subscribe filters use containerd's syntax over the envelope fields ``topic`` and ``namespace``
(e.g. ``topic=="/tasks/exit"``, ``namespace==moby``, ``topic~="^/tasks/"``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable

from aiodock._proto.containerd.services.events.v1 import (
    Envelope,
    EventsBase,
    ForwardRequest,
    PublishRequest,
    SubscribeRequest,
)
from aiodock._proto.google.protobuf import Empty
from aiodock.core import events as ev
from aiodock.core.metadata import FieldAdaptor, parse_filters
from aiodock.core.namespaces import namespace_from_context, validate_identifier
from aiodock.errors import InvalidArgument
from aiodock.grpc.convert import envelope_from_proto, envelope_to_proto, event_from_message, unpack_event
from aiodock.grpc.errors import grpc_service

ForwardHandler = Callable[[ev.Envelope], Awaitable[None]]

_TOPIC_RE = re.compile(r"(/[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*)+")


def validate_topic(topic: str) -> None:
    """containerd topics are '/'-separated identifiers, starting with '/'."""
    if not topic:
        raise InvalidArgument("must not be empty: invalid argument")
    if not topic.startswith("/"):
        raise InvalidArgument('must start with "/": invalid argument')
    if not _TOPIC_RE.fullmatch(topic):
        raise InvalidArgument(f'topic "{topic}" must be "/"-separated identifiers: invalid argument')


def _envelope_adaptor(envelope: ev.Envelope) -> FieldAdaptor:
    def field(path: tuple[str, ...]) -> str | None:
        if len(path) != 1:
            return None
        if path[0] == "topic":
            return envelope.topic
        if path[0] == "namespace":
            return envelope.namespace
        return None

    return field


@grpc_service
class EventsService(EventsBase):
    """``forward_handler`` receives forwarded envelopes (the daemon wires it to the task manager, which
    republishes); without one, forwarded envelopes are published on the exchange directly."""

    def __init__(self, exchange: ev.EventExchange, forward_handler: ForwardHandler | None = None) -> None:
        self._exchange = exchange
        self._forward_handler = forward_handler

    async def publish(self, message: PublishRequest) -> Empty:
        validate_topic(message.topic)
        if message.event is None:
            raise InvalidArgument("event must be set: invalid argument")
        ns = namespace_from_context()
        validate_identifier(ns)
        try:
            event: object = event_from_message(unpack_event(message.event))
        except InvalidArgument:
            event = message.event  # a type we do not know: passed on untouched
        self._exchange.publish(ns, message.topic, event)
        return Empty()

    async def forward(self, message: ForwardRequest) -> Empty:
        if message.envelope is None:
            raise InvalidArgument("envelope must be set: invalid argument")
        envelope = envelope_from_proto(message.envelope)
        validate_topic(envelope.topic)
        validate_identifier(envelope.namespace)
        if self._forward_handler is not None:
            await self._forward_handler(envelope)
        else:
            self._exchange.publish(envelope.namespace, envelope.topic, envelope.event, envelope.timestamp)
        return Empty()

    async def subscribe(self, message: SubscribeRequest) -> AsyncIterator[Envelope]:
        selected = parse_filters(message.filters)
        async for envelope in self._exchange.subscribe():
            if not selected.match(_envelope_adaptor(envelope)):
                continue
            converted = envelope_to_proto(envelope)
            if converted is not None:
                yield converted
