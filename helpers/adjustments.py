"""Adjustments that let Barbican's API and worker share one machine.

They are made inside the embedded server's own processes (the API in
:mod:`helpers.wsgi`, the worker in :mod:`helpers.worker`), never in a
learner's kernel, and they change no Barbican file.

SQLite and two processes.  oslo.db opens every transaction with a plain
``BEGIN``, which takes no lock until the first write.  When the API and the
worker each read and then write at the same moment, SQLite refuses one of
them at once ("database is locked") instead of letting it wait.  Measured
here: 5 of 20 orders submitted one after the other failed with HTTP 500,
and 2 accepted orders stayed PENDING for ever, because the worker's failed
transaction also rolled back the ERROR it tried to record.  Production
Barbican uses MySQL or PostgreSQL and never meets this.  Beginning every
SQLite transaction with ``BEGIN IMMEDIATE`` takes the write lock up front,
so the other process waits its turn (sqlite's busy timeout, 5 s) and no
order is lost.

An unreachable broker.  Barbican's API hands an order to the broker with
oslo.messaging's default of retrying for ever, so with the broker down the
request that creates the order never returns.  The lab gives up after a
few seconds instead: the order is marked ERROR with a reason that names
the broker, and the client gets HTTP 503 saying the same.

A worker stopped on purpose.  Barbican's worker acknowledges an order's
message before it processes it, and on SIGTERM it exits as soon as it has
stopped reading the queue: an order in hand at that moment would be lost,
PENDING for ever.  Pausing the worker is part of the lesson, so the lab's
worker first finishes the orders it has taken (oslo.messaging's
``wait()``, which Barbican's worker does not call).
"""

import logging

LOG = logging.getLogger(__name__)

# Connection attempts before the API gives up on the broker.  With the
# retry intervals the embedded server configures (1 s, then 2 s) the
# client hears back after about 3 s.
QUEUE_ATTEMPTS = 2

BROKER_DOWN = ("Barbican could not hand the order to its worker: the "
               "message broker does not answer")


def begin_sqlite_immediately():
    """Begin every SQLite transaction of this process with BEGIN IMMEDIATE.

    oslo.db switches pysqlite's own BEGIN off and emits one itself from a
    ``begin`` listener on each engine, unless the connection is already
    marked ``in_transaction``.  A listener on the Engine class runs before
    the engines' own listeners, so this one begins first and sets that
    mark; oslo.db's commit and rollback listeners clear it as usual.
    """
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "begin")
    def _begin_immediately(conn):
        if conn.dialect.name != "sqlite" or "in_transaction" in conn.info:
            return
        dbapi = conn.connection.dbapi_connection
        if getattr(dbapi, "isolation_level", "") is not None:
            return  # pysqlite begins on its own here: leave it be
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        conn.info["in_transaction"] = True


class _GivingUpClient:
    """Barbican's RPC client, but a broker that stays down fails the cast."""

    def __init__(self, client):
        self._client = client

    def cast(self, ctxt, method, **kwargs):
        import oslo_messaging

        try:
            return self._client.cast(ctxt, method, **kwargs)
        except oslo_messaging.MessagingException as exc:
            LOG.error("%s: %s", BROKER_DOWN, exc)
            _record_broker_failure(kwargs.get("order_id"),
                                   kwargs.get("project_id"))
            raise _broker_unavailable() from exc

    def call(self, ctxt, method, **kwargs):
        return self._client.call(ctxt, method, **kwargs)


def _broker_unavailable():
    from barbican.common import exception

    class BrokerUnavailable(exception.BarbicanHTTPException):
        message = BROKER_DOWN
        client_message = (BROKER_DOWN + ", so the order was marked ERROR; "
                          "start the broker and order again")
        status_code = 503

    return BrokerUnavailable()


def _record_broker_failure(order_id, project_id):
    """Mark the order ERROR: it was saved, but no worker will ever see it.

    The API commits the new order before it casts it to the worker, so
    without this the order would stay PENDING for ever.
    """
    if not order_id:
        return
    from barbican.model import models, repositories

    try:
        repo = repositories.get_order_repository()
        order = repo.get(entity_id=order_id, external_project_id=project_id,
                         suppress_exception=True)
        if order is None:
            return
        order.status = models.States.ERROR
        order.error_status_code = "503"
        order.set_error_reason_safely(
            "The message broker did not answer, so no worker received "
            "this order.")
        repo.save(order)
        repositories.commit()
    except Exception:
        LOG.exception("could not mark order %s as ERROR", order_id)
        repositories.rollback()


def give_up_on_unreachable_broker(attempts=QUEUE_ATTEMPTS):
    """Make the API's order casts fail after ``attempts`` tries.

    Call before the app is built: Barbican makes its queue clients when it
    builds its controllers.  Without the queue enabled this changes
    nothing, since Barbican then makes no queue client at all.
    """
    # Barbican's configuration first: parsing it makes it oslo.config's
    # global one, and oslo.messaging registers its options on the global
    # one when first imported (which barbican.queue does).
    from barbican.common import config  # noqa: F401
    from barbican import queue

    original = queue.get_client

    def get_client(target=None, version_cap=None, serializer=None):
        client = original(target=target, version_cap=version_cap,
                          serializer=serializer)
        if client is None:
            return None
        return _GivingUpClient(client.prepare(retry=attempts))

    queue.get_client = get_client


def finish_order_in_hand_on_stop():
    """Make Barbican's worker finish the orders it has taken before exiting.

    Call in the worker process before Barbican's worker starts.
    """
    from barbican.queue import server

    stop = server.TaskServer.stop

    def stop_then_finish(self):
        stop(self)
        # Runs what the worker acknowledged already, then returns.
        self._server.wait()

    server.TaskServer.stop = stop_then_finish
