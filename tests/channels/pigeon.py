"""A notification channel made only for the tests: carrier pigeons, each
target a loft (``pigeon://<loft>``). Nothing in the service names it; a test
registers it with one line (``CHANNELS["pigeon"] = "tests.channels.pigeon:Pigeon"``)."""

from __future__ import annotations

from services.notify.channels import Channel, Message, TargetRefused

FLOWN: list[Message] = []  # every message sent, in order


class Pigeon(Channel):
    kind = "pigeon"

    def check(self, value: str, *, allow_private: bool) -> str:
        if not value.startswith("pigeon://"):
            raise TargetRefused("A pigeon flies to a pigeon:// loft.")
        return value

    def send(self, message: Message, settings) -> None:
        FLOWN.append(message)
