"""Gunicorn settings shared by every service (``-c python:shared.gunicorn_conf``).

Threads per worker let the notify service's live stream hold connections open
while other requests are served.
"""
import os

workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "8"))
timeout = 60
graceful_timeout = 10
keepalive = 5
accesslog = None  # requests are logged by the app itself, without query strings or bodies
errorlog = "-"
loglevel = "warning"
forwarded_allow_ips = "127.0.0.1"


def post_worker_init(worker):
    """The app loaded in this worker: its start-up objects out of the garbage collector's walks
    (``shared.workers.keep_startup_objects``)."""
    from shared.workers import keep_startup_objects

    keep_startup_objects()


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
