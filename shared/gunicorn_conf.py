"""Gunicorn settings shared by every service (``-c python:shared.gunicorn_conf``).

``WEB_THREADS`` threads per worker serve requests. The notify service's live
inbox holds a thread for as long as a stream is open, so a notify worker (``tandem
serve notify`` names the service in ``TANDEM_SERVICE``) has one more thread for
each stream it may hold, ``NOTIFY_STREAMS_PER_PROCESS``: streams can never take
the threads requests need (docs/decisions/0001-live-streams-on-threads-of-their-own.md).
"""

import os

from shared import config as config_values  # `config` is a gunicorn setting

workers = config_values.web_concurrency()
# The app is loaded once, in the master, and its workers forked from it: its pages (the modules, the
# schemas, the routes) are shared by every worker instead of one copy each
# (docs/decisions/0010-one-supervisor-forking-every-process.md).
preload_app = True
worker_class = "gthread"
threads = config_values.web_threads()
if config_values.service_name() == "notify":
    threads += config_values.streams_per_process()
timeout = 60
graceful_timeout = 10
keepalive = 5
accesslog = None  # requests are logged by the app itself, without query strings or bodies
errorlog = "-"
loglevel = "warning"
forwarded_allow_ips = "127.0.0.1"
# WEB_NICE: the web workers' niceness (0-19). Where the relays and consumers share the machine's cores
# with them (`tandem run` sets 5), a saturated machine then delays a request by a little rather than
# let the event pipeline fall behind (docs/decisions/0006-web-nice.md: celebrations' p95 with and
# without, the POSTs' own latency unchanged).
WEB_NICE = config_values.web_nice()


def when_ready(server):
    """The app loaded in the master, before any worker is forked: its objects out of the garbage
    collector's walks, so that no worker's collection writes to (and copies) the pages they share."""
    import gc

    gc.collect()
    gc.freeze()


def post_fork(server, worker):
    """A worker's database connections are its own: none of the master's pool is reused."""
    engine = getattr(server.app.wsgi(), "extensions", {}).get("tandem", {}).get("engine")
    if engine is not None:
        engine.dispose(close=False)


def post_worker_init(worker):
    """The app loaded in this worker: its start-up objects out of the garbage collector's walks
    (``shared.workers.keep_startup_objects``)."""
    from shared.workers import keep_startup_objects

    keep_startup_objects()
    if WEB_NICE:
        os.nice(WEB_NICE)


def child_exit(server, worker):
    if config_values.prometheus_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
