"""Event sourcing on Redis Streams: the schema, the publisher, the consumer group, the observer and the git reconciler.

Agents publish events (ops.events.publisher); the observer (ops.events.observer)
reads them through a consumer group (ops.events.consumer), logs them, and turns
each into a change request (ops.events.changes); approved ones become git
commits (ops.events.reconciler). docs/EVENT_SCHEMA.md describes the event.
"""
