"""``tandem``: the operator's command for every service.

tandem run                     migrate, then start every service and worker (what `make run` does)
tandem migrate [SERVICE...]    apply each service's database migrations
tandem serve SERVICE           one service's HTTP API under gunicorn
tandem worker SERVICE NAME     one worker process (e.g. `tandem worker journal relay`)
tandem watch                   print every event that goes by on the exchange
tandem dlq list|replay QUEUE   inspect, or re-queue, a dead-letter queue
tandem broker-users            RabbitMQ definitions: one user per service (import at the broker)
tandem republish --couple ID   publish a couple's history again (rebuilds the milestones view)
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
import uuid

import click

from services import SERVICES
from shared import auth, config
from shared import migrate as migrations


def _load(spec: str):
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


@click.group(help=__doc__)
def main() -> None:
    pass


@main.command("migrate")
@click.argument("services", nargs=-1)
def migrate_cmd(services: tuple[str, ...]) -> None:
    """Apply migrations (all services when none is named)."""
    config.keep_var_private()  # the SQLite files it may make hold notes and password hashes
    for name in services or tuple(SERVICES):
        if name not in SERVICES:
            raise click.BadParameter(f"unknown service {name!r}; one of {', '.join(SERVICES)}")
        url = config.database_url(name)
        migrations.upgrade(name, url)
        click.echo(f"{name}: database at head")


def _gunicorn_args(service: str) -> list[str]:
    """gunicorn's command line for one service's HTTP API."""
    port = config.port(service)
    host = config.bind_host()
    return [
        "-c",
        "python:shared.gunicorn_conf",
        "-b",
        f"{host}:{port}",
        "--name",
        f"tandem-{service}",
        SERVICES[service].wsgi,
    ]


@main.command()
@click.argument("service")
def serve(service: str) -> None:
    """Serve one service's HTTP API under gunicorn (replaces this process)."""
    gunicorn = shutil.which("gunicorn") or os.path.join(os.path.dirname(sys.executable), "gunicorn")
    os.execve(
        gunicorn,
        [gunicorn, *_gunicorn_args(service)],
        dict(os.environ, TANDEM_SERVICE=service),
    )


def _serve_here(service: str):
    """What a forked web process of `tandem run` runs: gunicorn in this very process."""

    def target():
        from gunicorn.app.wsgiapp import WSGIApplication

        sys.argv = ["gunicorn", *_gunicorn_args(service)]
        WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]", prog="gunicorn").run()

    return target


@main.command()
@click.argument("service")
@click.argument("name")
def worker(service: str, name: str) -> None:
    """Run one worker process of a service."""
    _load(SERVICES[service].workers[name])()


# What every process `tandem run` starts loads: loaded once, before it forks them (shared.supervisor).
SHARED_CODE = [
    "services.journal.app",
    "services.milestones.app",
    "services.notify.app",
    "gunicorn.app.wsgiapp",
    "gunicorn.arbiter",
    "gunicorn.workers.gthread",
    "psycopg",  # the drivers and transports, whichever this run uses: a few MiB, once
    "sqlalchemy.dialects.postgresql.psycopg",
    "sqlalchemy.dialects.sqlite.pysqlite",
    "kombu.transport.pyamqp",
    "kombu.transport.filesystem",
]


@main.command()
def run() -> None:
    """Migrate, then start every service and its workers; Ctrl-C stops them all."""
    from shared import supervisor

    var = config.keep_var_private()  # for every process it starts too
    var.mkdir(parents=True, exist_ok=True)
    if not config.token_private_key():
        auth.ensure_local_keypair(var)  # before the services race to make it
    for name in SERVICES:
        migrations.upgrade(name, config.database_url(name))
    children: list[supervisor.Child] = []
    # The processes write to the supervisor's pipes, never to a terminal: they are told who reads.
    log_format = config.log_format() or ("console" if sys.stdout.isatty() else "json")
    click.echo(
        f"Tandem on {'the embedded broker under ' + str(var / 'broker') if config.broker_is_embedded() else 'the broker in BROKER_URL'}"
        f" and {'SQLite under ' + str(var) if all(config.database_url(n).startswith('sqlite') for n in SERVICES) else 'the databases in *_DATABASE_URL'}"
    )
    for name, spec in SERVICES.items():
        prom = var / "prometheus" / name
        shutil.rmtree(prom, ignore_errors=True)
        prom.mkdir(parents=True)
        env = dict(
            os.environ,
            PROMETHEUS_MULTIPROC_DIR=str(prom),
            PYTHONUNBUFFERED="1",
            TANDEM_LOG_FORMAT=log_format,
        )
        port = config.port(name)
        click.echo(
            f"  {name:<11} http://127.0.0.1:{port}   (API docs: http://127.0.0.1:{port}/docs)"
        )
        # Every process on this machine's cores: the web workers yield to the event pipeline (WEB_NICE).
        children.append(
            supervisor.Child(
                f"{name}.web",
                f"tandem serve {name}",
                _serve_here(name),
                dict(env, WEB_NICE=str(config.web_nice(5)), TANDEM_SERVICE=name),
            )
        )
        for worker_name, target in spec.workers.items():
            # <SERVICE>_<WORKER>_REPLICAS: several processes of one worker (consumers share the queue,
            # relays and evaluators claim rows with SKIP LOCKED), named service.worker.1, .2, ...
            replicas = config.replicas(name, worker_name)
            for k in range(1, replicas + 1):
                label = f"{name}.{worker_name}" + (f".{k}" if replicas > 1 else "")
                children.append(
                    supervisor.Child(
                        label, f"tandem worker {name} {worker_name}", _load_later(target), env
                    )
                )
    click.echo("Watch the events:  .venv/bin/tandem watch      Stop: Ctrl-C")
    supervisor.preload(SHARED_CODE)
    sys.exit(supervisor.Supervisor(children).run())


def _load_later(spec: str):
    return lambda: _load(spec)()


@main.command("broker-users")
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False), help="write to this file, else print"
)
def broker_users(output: str | None) -> None:
    """RabbitMQ definitions: the topology and one user per service, from
    <SERVICE>_BROKER_URL, who may publish only that service's events (and the
    BROKER_URL user, if another, as the operator). Load them at the broker's
    boot or with `rabbitmqctl import_definitions`; passwords are only hashed in."""
    from shared import broker

    try:
        text = json.dumps(broker.definitions_from_env(), indent=2)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    if output is None:
        click.echo(text)
        return
    with open(output, "w") as f:  # the broker reads it, as another user: salted hashes only
        f.write(text + "\n")
    os.chmod(output, 0o644)
    click.echo(f"definitions written to {output}", err=True)


@main.command()
@click.option("--pattern", default="#", help="routing-key pattern, e.g. 'journal.entry.*'")
def watch(pattern: str) -> None:
    """Print every event on the exchange as one JSON line (no queue of a service is touched)."""
    from kombu import Consumer, Queue

    from shared import broker, topology

    conn = broker.connect()
    topology.declare(conn)
    queue = Queue(
        f"tandem.watch.{uuid.uuid4().hex[:8]}",
        exchange=topology.EXCHANGE,
        routing_key=pattern,
        exclusive=not config.broker_is_embedded(),
        auto_delete=True,
        durable=False,
    )

    def show(message):
        try:
            click.echo(json.dumps(json.loads(message.body), ensure_ascii=False))
        except ValueError:
            click.echo(repr(message.body))
        message.ack()

    with conn, Consumer(conn, queues=[queue], on_message=show):
        click.echo(f"watching '{pattern}' on the progress exchange; Ctrl-C to stop", err=True)
        try:
            while True:
                try:
                    conn.drain_events(timeout=1)
                except TimeoutError:
                    pass
        except KeyboardInterrupt:
            pass
        finally:
            try:
                queue(conn.default_channel).delete()
            except Exception:
                pass


@main.command()
@click.option("--couple", "couple_id", required=True, help="the couple's id")
def republish(couple_id: str) -> None:
    """Publish a couple's history again (partners, couple, every entry as it
    stands) through the journal's outbox, to rebuild the milestones view; what a
    consumer has already is applied as nothing new."""
    from services.journal import app as journal_app
    from services.journal import use_cases
    from shared.config import Settings
    from shared.db import unit_of_work
    from shared.errors import NotFound
    from shared.workers import open_database

    _, sessions = open_database(Settings.from_env(journal_app.SERVICE))
    try:
        with unit_of_work(sessions) as s:
            n = use_cases.republish_couple(s, couple_id)
    except NotFound:
        raise click.ClickException(f"no couple {couple_id!r} in the journal") from None
    click.echo(f"{n} events queued in the journal's outbox; its relay publishes them")


@main.group()
def dlq() -> None:
    """Dead-letter queues: list what failed and why, replay once the cause is fixed."""


@dlq.command("list")
@click.argument("queue")
def dlq_list(queue: str) -> None:
    from shared import deadletters

    for item in deadletters.peek(queue):
        click.echo(json.dumps(item, ensure_ascii=False, default=str))


@dlq.command("replay")
@click.argument("queue")
def dlq_replay(queue: str) -> None:
    from shared import deadletters

    n = deadletters.replay(queue)
    click.echo(f"replayed {n} message(s) from {queue}.dead to {queue}")


if __name__ == "__main__":
    main()
