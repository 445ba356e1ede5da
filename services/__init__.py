"""Tandem's three services. Each is a package with the same rooms:
``tables`` (its database), ``schemas`` (marshmallow, the API's shapes),
``use_cases`` (one function per thing a user or an event does), ``http``
(blueprints), ``app`` (the composition root), and for consumers ``handlers``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    wsgi: str  # gunicorn application spec
    metadata: str  # "module:attribute" of its SQLAlchemy MetaData
    workers: dict[str, str] = field(default_factory=dict)  # name -> "module:function"

    @property
    def migrations(self) -> str:
        return f"services.{self.name}:migrations"


SERVICES: dict[str, ServiceSpec] = {
    "journal": ServiceSpec(
        name="journal",
        wsgi="services.journal.app:create_app()",
        metadata="services.journal.tables:metadata",
        workers={"relay": "services.journal.app:run_relay"},
    ),
    "milestones": ServiceSpec(
        name="milestones",
        wsgi="services.milestones.app:create_app()",
        metadata="services.milestones.tables:metadata",
        workers={
            "consumer": "services.milestones.app:run_consumer",
            "evaluator": "services.milestones.app:run_evaluator",
            "relay": "services.milestones.app:run_relay",
        },
    ),
    "notify": ServiceSpec(
        name="notify",
        wsgi="services.notify.app:create_app()",
        metadata="services.notify.tables:metadata",
        workers={
            "consumer": "services.notify.app:run_consumer",
            "delivery": "services.notify.app:run_delivery",
            "relay": "services.notify.app:run_relay",
        },
    ),
}
