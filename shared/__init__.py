"""Tandem's shared core: what every service uses the same way.

Event catalog and envelope, broker topology and publisher, the outbox relay,
the idempotent consumer, token checks, problem responses, configuration,
health and logging. It knows no service.
"""
