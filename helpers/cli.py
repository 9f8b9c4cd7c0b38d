"""``python -m helpers``: the exercise and the embedded server from a shell.

Every failure ends as one line on stderr and a non-zero exit code, never a
traceback (``--debug`` shows it for whoever wants it).
"""

import argparse
import logging
import math
import os
import sys

from helpers import embedded
from helpers.errors import LabError
from helpers.hexdump import hexdump, iter_hexdump

# The modules that talk to Barbican are imported in check() alone: `server
# start` must not wait for openstacksdk and pandas to load.
from helpers.exercise import (DEFAULT_ALGORITHM, DEFAULT_BIT_LENGTH,
                              DEFAULT_MODE, DEFAULT_NAME)

LOG = logging.getLogger("helpers")


def _say(text=""):
    print(text, flush=True)


def _print_status(server):
    state = "running" if server.running else "not running"
    _say(f"Embedded Barbican {server.version}: {state}"
         + (f" (pid {server.pid})" if server.running else "")
         + f", {server.mode_name} mode")
    _say(f"  endpoint:     {server.endpoint}")
    _say(f"  state folder: {server.state_dir}")
    if server.mode == embedded.ASYNC:
        _print_parts(server)


def _print_parts(server):
    for part in server.parts:
        pid = f", pid {part.pid}" if part.pid else ""
        _say(f"  {part.name + ':':13} {part.state}{pid} ({part.detail})")
    if server.orders_waiting is not None:
        _say(f"  orders waiting in the queue: {server.orders_waiting}")
    if server.part("worker").state == "paused":
        _say("  New orders stay PENDING until: python -m helpers server "
             "worker resume")


def _print_environment(server):
    _say("Point the openstack CLI at it with:")
    for name, value in server.cli_environment.items():
        _say(f"  export {name}={value}")


def server_start(args):
    server = embedded.start(args.state_dir, args.port, mode=args.mode)
    if server.already_running:
        _say(f"The embedded Barbican already runs at {server.endpoint}.")
    else:
        _say(f"Embedded Barbican {server.version} is running at "
             f"{server.endpoint} (pid {server.pid}).")
    _say(f"State folder: {server.state_dir}")
    if server.mode == embedded.ASYNC:
        _say("Asynchronous mode: a worker fulfils orders from a message "
             "queue.")
        _print_parts(server)
    _print_environment(server)


def worker_pause(args):
    embedded.pause_worker(args.state_dir)
    _say("Paused Barbican's worker: new orders stay PENDING in the queue.")
    _say("Resume it with: python -m helpers server worker resume")


def worker_resume(args):
    waiting = embedded.status(args.state_dir).orders_waiting
    embedded.resume_worker(args.state_dir)
    _say("Barbican's worker runs again"
         + (f"; it takes the {waiting} order(s) that waited." if waiting
            else "."))


def server_stop(args):
    if embedded.stop(args.state_dir):
        _say("Stopped the embedded Barbican; its keys stay in "
             f"{embedded.status(args.state_dir).state_dir}.")
    else:
        _say("The embedded Barbican was not running.")


def server_status(args):
    server = embedded.status(args.state_dir)
    _print_status(server)
    if server.running:
        _print_environment(server)
    return 0 if server.running else 3


def _progress(order, elapsed):
    print(f"  {elapsed:5.1f} s  {order.status}", file=sys.stderr, flush=True)


def check(args):
    from helpers.connection import connect, describe
    from helpers.errors import KeyFileExists, NotFound
    from helpers.orders import delete_order, order_key, wait_for_order
    from helpers.secrets import delete_secret, fetch_key, save_key
    from helpers.tables import order_table

    conn = connect(state_dir=args.state_dir)
    _say(f"Barbican: {describe(conn)}")
    order = order_key(conn, name=args.name, algorithm=args.algorithm,
                      bit_length=args.bit_length, mode=args.mode)
    _say(f"Order href: {order.order_ref}")
    try:
        order = wait_for_order(conn, order, timeout=args.timeout,
                               progress=_progress)
        _say(order_table(order).to_string(index=False))
        _say(f"Secret href: {order.secret_ref}")
        key = fetch_key(conn, order)
        if args.file:
            try:
                path = save_key(key, args.file, overwrite=args.overwrite)
            except KeyFileExists as exc:
                raise KeyFileExists(
                    exc.message, "Add --overwrite to replace it, or choose "
                    "another --file.") from exc
            _say(f"Saved {len(key)} bytes to {path} (mode 0600).")
        _say(f"Key: {len(key)} bytes ({len(key) * 8} bits)")
        sys.stdout.write(hexdump(key))
    finally:
        if not args.keep:
            # A check run before every class must not pile up keys in the
            # project, whether it passed or not: it takes away what it made.
            try:
                if order.secret_ref:
                    delete_secret(conn, order.secret_ref)
                delete_order(conn, order)
                _say("Deleted this check's order and secret (--keep keeps "
                     "them).")
            except (NotFound, LabError) as exc:
                LOG.warning("could not delete this check's order: %s", exc)
    return 0

def hexdump_file(args):
    try:
        with open(args.file, "rb") as f:
            # Piece by piece: a large file must not fill the memory.
            for line in iter_hexdump(iter(lambda: f.read(1 << 16), b"")):
                sys.stdout.write(line)
    except OSError as exc:
        raise LabError(f"Cannot read {args.file}: {exc.strerror}.",
                       "Check the file name; the exercise saves the key as "
                       "ordered_key.") from exc
    return 0


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds greater than 0")
    return value

def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m helpers",
        description="Order an AES key from Barbican and look at it.")
    parser.add_argument("--debug", action="store_true",
                        help="log details and show tracebacks")
    parser.add_argument(
        "--state-dir", default=None,
        help=f"embedded server's state folder (default: "
             f"${embedded.STATE_ENV} or ~/.local/share/barbican-lab)")
    # --state-dir is accepted after the subcommand too, where people put it.
    state_dir = argparse.ArgumentParser(add_help=False)
    state_dir.add_argument("--state-dir", default=argparse.SUPPRESS,
                           help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)

    server = commands.add_parser("server", help="run the embedded Barbican")
    actions = server.add_subparsers(dest="action", required=True)
    start = actions.add_parser("start", help="start it in the background",
                               parents=[state_dir])
    start.add_argument("--port", type=int, default=None,
                       help=f"port on 127.0.0.1 (default: the one it used "
                            f"last, or {embedded.DEFAULT_PORT})")
    modes = start.add_mutually_exclusive_group()
    modes.add_argument(
        "--async", dest="mode", action="store_const", const=embedded.ASYNC,
        help="asynchronous: API, message broker (RabbitMQ) and worker, as "
             "in production; orders start PENDING")
    modes.add_argument(
        "--sync", dest="mode", action="store_const", const=embedded.SYNC,
        help="synchronous: one process; orders are ACTIVE at once")
    start.epilog = (f"Without --async or --sync: ${embedded.MODE_ENV} "
                    f"if set, else {embedded.DEFAULT_MODE}.")
    start.set_defaults(run=server_start, mode=None)
    actions.add_parser("stop", help="stop it; data stays",
                       parents=[state_dir]).set_defaults(
        run=server_stop)
    actions.add_parser("status", help="is it running, and where",
                       parents=[state_dir]).set_defaults(
        run=server_status)
    worker = actions.add_parser(
        "worker", help="pause or resume Barbican's worker (--async only)")
    steps = worker.add_subparsers(dest="step", required=True)
    steps.add_parser(
        "pause", help="stop the worker: new orders stay PENDING",
        parents=[state_dir]).set_defaults(
        run=worker_pause)
    steps.add_parser(
        "resume", help="start it again: waiting orders go ACTIVE",
        parents=[state_dir]
    ).set_defaults(run=worker_resume)

    exercise = commands.add_parser(
        "check", help="run the whole exercise: order, wait, fetch, hexdump",
        parents=[state_dir])
    exercise.add_argument("--name", default=DEFAULT_NAME)
    exercise.add_argument("--algorithm", default=DEFAULT_ALGORITHM)
    exercise.add_argument("--bit-length", default=DEFAULT_BIT_LENGTH)
    exercise.add_argument("--mode", default=DEFAULT_MODE)
    exercise.add_argument("--timeout", type=_seconds, default=60.0,
                          help="seconds to wait for ACTIVE (default 60)")
    exercise.add_argument("--file", default=None,
                          help="also save the key to this file (mode 0600)")
    exercise.add_argument("--overwrite", action="store_true",
                          help="replace --file if it holds another key")
    exercise.add_argument("--keep", action="store_true",
                          help="keep the order and its secret in Barbican")
    exercise.set_defaults(run=check)

    dump = commands.add_parser("hexdump", help="what hexdump -C FILE prints")
    dump.add_argument("file")
    dump.set_defaults(run=hexdump_file)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args) or 0
    except LabError as exc:
        if args.debug:
            LOG.exception("failed")
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`... | head`): nothing left to tell anyone,
        # and Python's final flush must not complain about it either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        if args.debug:
            LOG.exception("failed")
        if exc.filename:
            print(f"error: {exc.strerror or exc}: {exc.filename}. Check "
                  f"that the path exists and that you may read and write "
                  f"there.", file=sys.stderr)
        else:
            print(f"error: {exc.strerror or exc}.", file=sys.stderr)
        return 1
    except Exception as exc:  # the one line promised above, for the unforeseen
        if args.debug:
            LOG.exception("failed")
        print(f"error: unexpected {type(exc).__name__}: {exc} "
              f"(run with --debug for details)", file=sys.stderr)
        return 2
