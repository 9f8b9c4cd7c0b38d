"""Waiting: how soon ``wait_for_order`` notices ACTIVE, and what it costs.

Orders are kept PENDING in one of two ways.  By default, with the
asynchronous embedded server (RabbitMQ and Barbican's own worker) whose
worker is paused: orders wait in the queue until the worker resumes, as
in a classroom.  With ``--pending sqlite`` (and in ``--quick`` runs), on
the synchronous server, by setting an order's row in the server's sqlite
database to PENDING and later back to ACTIVE; Barbican reports whatever
the row says.  Either way the moment an order turns ACTIVE is read from
that database, every 10 ms.

The reference is openstacksdk's own ``wait_for_status`` with its default
interval (2 s), waiting on a twin order at the same time.  Requests are
counted at the HTTP adapter under each waiter's own connection
(:class:`bench.exercise.RequestLog`).
"""

import contextlib
import itertools
import logging
import sqlite3
import threading
import time

from openstack import exceptions as sdk_exceptions

import helpers
from bench.exercise import RequestLog, uuid_of
from bench.figures import Figure, median
from bench.servers import free_port
from helpers import embedded
from helpers.orders import Order

LOG = logging.getLogger(__name__)

SECTION = "3 waiting"
FIRST_CHECK_TARGET = 0.1
STEADY_AFTER = 2.0
FLIP_POLL = 0.01
RELEASE_MARGIN = 1.5
FLIP_TIMEOUT = 120.0
REF = "SDK wait_for_status"


def _database(state_dir):
    return state_dir / "barbican.sqlite"


class SqliteHold:
    """Hold orders PENDING on the synchronous server through their rows."""

    label = ("orders kept PENDING by editing their rows in the synchronous "
             "server's barbican.sqlite")

    def __init__(self, server):
        self.state_dir = server.state_dir

    def open(self):
        pass

    def _set(self, order_uuids, status):
        database = sqlite3.connect(_database(self.state_dir), timeout=30)
        with contextlib.closing(database) as db, db:
            db.executemany("UPDATE orders SET status = ? WHERE id = ?",
                           [(status, u) for u in order_uuids])

    def ordered(self, order_uuids):
        self._set(order_uuids, "PENDING")

    def release(self, order_uuids):
        self._set(order_uuids, "ACTIVE")

    def close(self):
        pass


class PausedWorker:
    """Hold orders PENDING in the queue of an asynchronous server."""

    label = ("orders kept PENDING by pausing the worker of an asynchronous "
             "embedded server (RabbitMQ + barbican-worker)")

    def __init__(self, workdir):
        self.state_dir = workdir / "async"
        self.port = free_port()

    def open(self):
        embedded.start(self.state_dir, self.port, mode=embedded.ASYNC)
        embedded.pause_worker(self.state_dir)

    def ordered(self, order_uuids):
        pass

    def release(self, order_uuids):
        embedded.resume_worker(self.state_dir)

    def close(self):
        embedded.stop(self.state_dir)


def _wait_ours(conn, order_uuid, timeout):
    try:
        helpers.wait_for_order(conn, order_uuid, timeout=timeout)
    except helpers.OrderTimeout:
        pass


def _wait_sdk(conn, order_uuid, timeout):
    try:
        conn.key_manager.wait_for_status(Order.new(id=order_uuid), "ACTIVE",
                                         wait=timeout)
    except sdk_exceptions.ResourceTimeout:
        pass


WAITERS = {"ours": _wait_ours, "ref": _wait_sdk}


class Waiter(threading.Thread):
    """One wait, on its own connection, in its own thread."""

    def __init__(self, kind, state_dir, order_uuid, timeout):
        super().__init__(daemon=True)
        self.kind = kind
        self.order_uuid = order_uuid
        self.timeout = timeout
        self.conn = helpers.connect(state_dir=state_dir)
        self.log = RequestLog(self.conn)
        self.began = self.ended = None

    def run(self):
        self.began = time.monotonic()
        try:
            WAITERS[self.kind](self.conn, self.order_uuid, self.timeout)
        finally:
            self.ended = time.monotonic()
            self.conn.close()

    def requests(self):
        """Seconds from the wait's start to each request on the order."""
        return [sent - self.began
                for sent, _, _, url, _ in self.log.entries
                if self.order_uuid in url and sent >= self.began]


def _order(conn):
    return uuid_of(helpers.order_key(conn).order_ref)


def _first_checks(server, repeats):
    """Waits on orders that are ACTIVE already, as the sync server makes."""
    maker = helpers.connect(state_dir=server.state_dir)
    first, done = {k: [] for k in WAITERS}, {k: [] for k in WAITERS}
    try:
        for _ in range(repeats):
            # Passed as UUIDs, so both waiters must read the order.
            waiters = [Waiter(kind, server.state_dir, _order(maker), 10)
                       for kind in WAITERS]
            for waiter in waiters:
                waiter.start()
            for waiter in waiters:
                waiter.join(60)
                first[waiter.kind].append(waiter.requests()[0])
                done[waiter.kind].append(waiter.ended - waiter.began)
    finally:
        maker.close()
    return first, done


def _watch_flips(state_dir, order_uuids, deadline):
    """When each order is first seen ACTIVE in the database (monotonic)."""
    flips = {}
    uri = f"file:{_database(state_dir)}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True,
                                            timeout=10)) as db:
        while len(flips) < len(order_uuids) and time.monotonic() < deadline:
            marks = ",".join("?" * len(order_uuids))
            rows = db.execute(f"SELECT id, status FROM orders WHERE id IN "
                              f"({marks})", list(order_uuids)).fetchall()
            now = time.monotonic()
            for uuid, status in rows:
                if status == "ACTIVE" and uuid not in flips:
                    flips[uuid] = now
            time.sleep(FLIP_POLL)
    return flips


def _held(hold_source, state_dir, delays, hold):
    """Hold orders PENDING: two for ``hold`` s, two more for each delay.

    Every order and connection is made first; then the waits start so
    that, when the orders are released, the second kind has waited ``d``
    seconds, one pair per delay ``d``.
    """
    maker = helpers.connect(state_dir=state_dir)
    try:
        def pair(timeout):
            waiters = []
            for kind in WAITERS:
                order_uuid = _order(maker)
                hold_source.ordered([order_uuid])
                waiters.append(Waiter(kind, state_dir, order_uuid, timeout))
            return waiters

        holders = pair(hold)
        noticers = {delay: pair(hold + FLIP_TIMEOUT)
                    for delay in sorted(delays, reverse=True)}
    finally:
        maker.close()

    for waiter in holders:
        waiter.start()
    release_at = time.monotonic() + max([hold] + list(delays)) + \
        RELEASE_MARGIN
    for delay, waiters in noticers.items():
        time.sleep(max(0.0, release_at - delay - time.monotonic()))
        for waiter in waiters:
            waiter.start()
    time.sleep(max(0.0, release_at - time.monotonic()))
    noticers = [w for waiters in noticers.values() for w in waiters]
    hold_source.release([w.order_uuid for w in holders + noticers])
    flips = _watch_flips(state_dir, [w.order_uuid for w in noticers],
                         time.monotonic() + FLIP_TIMEOUT)
    for waiter in holders + noticers:
        waiter.join(hold + FLIP_TIMEOUT + 30)

    notice = {kind: [] for kind in WAITERS}
    for waiter in noticers:
        flipped = flips.get(waiter.order_uuid)
        if flipped is not None and waiter.ended is not None \
                and waiter.ended >= flipped:
            notice[waiter.kind].append(waiter.ended - flipped)
    return holders, notice


def _schedule(waiter):
    sent = waiter.requests()
    steady = [t for t in sent if t >= STEADY_AFTER]
    gaps = [b - a for a, b in itertools.pairwise(steady)]
    # Requests per second once backed off: the most that fall in any one
    # second after the first two.
    busiest = max((sum(1 for u in steady if t <= u < t + 1.0)
                   for t in steady), default=0)
    return {"requests": len(sent), "sent": sent,
            "min_gap": min(gaps, default=None), "busiest": busiest}


def measure(server, workdir, repeats, delays, hold, pending):
    """Measure the wait helper against openstacksdk's ``wait_for_status``.

    :param server: the running synchronous embedded server.
    :param workdir: where an asynchronous server may keep its state.
    :param repeats: waits on an ACTIVE order, for the first check.
    :param delays: seconds an order stays PENDING before going ACTIVE.
    :param hold: seconds an order stays PENDING for the request count.
    :param pending: ``"worker"`` or ``"sqlite"``: how orders stay PENDING.
    :returns: a list of :class:`Figure`.
    """
    first, done = _first_checks(server, repeats)
    if pending == "worker":
        hold_source, state_dir = PausedWorker(workdir), workdir / "async"
    else:
        hold_source, state_dir = SqliteHold(server), server.state_dir
    hold_source.open()
    try:
        holders, notice = _held(hold_source, state_dir, delays, hold)
    finally:
        hold_source.close()

    ours_first = max(first["ours"])
    figures = [
        Figure(SECTION, f"first request after call, max of {repeats} (s)",
               ours_first, max(first["ref"]), REF,
               f"<= {FIRST_CHECK_TARGET} s",
               ours_first <= FIRST_CHECK_TARGET),
        Figure(SECTION, "ACTIVE order noticed, median (s)",
               median(done["ours"]), median(done["ref"]), REF),
    ]
    if notice["ours"] and notice["ref"]:
        figures += [
            Figure(SECTION, f"PENDING->ACTIVE noticed, median of "
                   f"{len(notice['ours'])} (s)", median(notice["ours"]),
                   median(notice["ref"]), REF,
                   extra={"delays": list(delays), **notice}),
            Figure(SECTION, "PENDING->ACTIVE noticed, worst (s)",
                   max(notice["ours"]), max(notice["ref"]), REF),
        ]
    else:
        figures.append(Figure(SECTION, "PENDING->ACTIVE noticed (s)", None,
                              None, REF, note="no order turned ACTIVE"))
    ours, sdk = ({w.kind: _schedule(w) for w in holders}[k]
                 for k in ("ours", "ref"))
    figures += [
        Figure(SECTION, f"requests while PENDING {hold:.0f} s",
               ours["requests"], sdk["requests"], REF, digits=0,
               note=hold_source.label,
               extra={"ours": ours["sent"], "ref": sdk["sent"]}),
        Figure(SECTION, "requests in busiest 1 s after backoff",
               ours["busiest"], sdk["busiest"], REF, "<= 1",
               ours["busiest"] <= 1, digits=0),
        Figure(SECTION, "shortest gap after backoff (s)", ours["min_gap"],
               sdk["min_gap"], REF, digits=2),
    ]
    return figures
