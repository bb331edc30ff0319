"""`edgeagent receiver`: serve the stand-in webhook, or inspect what it accepted."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import uvicorn

from edgeagent.receiver.app import Network, build_app
from edgeagent.receiver.store import ReceiverStore, StoreError

PROG = "edgeagent receiver"
EXIT_USAGE = 2
EXIT_FAILURE = 1


class _CliError(Exception):
    """A problem the operator fixes on the command line; printed without a traceback."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def _network(text: str) -> Network:
    try:
        # strict=False: "10.1.2.3/8" means the network around it, as firewalls read it.
        return ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an address or CIDR network: {text!r}") from exc


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port (0-65535): {text!r}")
    return port


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Local stand-in for the platform's webhook: serve it, or inspect its file.",
    )
    parser.add_argument("--db", type=Path, required=True, help="the receiver's SQLite file")
    serve = parser.add_argument_group("serve (the default mode)")
    serve.add_argument("--listen", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=_port, default=8787, help="TCP port; 0 picks a free one")
    serve.add_argument("--api-key-file", type=Path, help="file holding the expected X-Api-Key")
    serve.add_argument(
        "--signing-secret-file", type=Path, help="file holding the HMAC signing secret"
    )
    serve.add_argument("--vendor-id", help="the only vendorId accepted (default: any)")
    serve.add_argument(
        "--allow",
        type=_network,
        action="append",
        metavar="CIDR",
        help="client network allowed to post (repeatable; default: any)",
    )
    serve.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="warning",
        help="the receiver's own log level (debug: one line per batch)",
    )
    inspect = parser.add_argument_group("inspect")
    modes = inspect.add_mutually_exclusive_group()
    modes.add_argument("--dump", action="store_true", help="print accepted events as JSON lines")
    modes.add_argument("--summary", action="store_true", help="print counts as one JSON object")
    inspect.add_argument("--type", help="with --dump: only events of this type")
    return parser


def _read_secret(path: Path | None, what: str, option: str) -> bytes:
    if path is None:
        raise _CliError(f"{option} is required to serve")
    try:
        secret = path.read_bytes()
    except OSError as exc:
        raise _CliError(f"cannot read the {what} from {path}: {exc.strerror or exc}") from exc
    # Editors and `echo` end files with a newline that is no part of the secret.
    secret = secret.rstrip(b"\r\n")
    if not secret:
        raise _CliError(f"the {what} file {path} is empty")
    return secret


def _open_existing(path: Path) -> ReceiverStore:
    # Inspecting must not leave an empty receiver file behind a mistyped path.
    if not path.is_file():
        raise _CliError(f"no receiver file at {path}")
    return _open(path)


def _open(path: Path) -> ReceiverStore:
    try:
        return ReceiverStore(path)
    except StoreError as exc:
        raise _CliError(str(exc), EXIT_FAILURE) from exc


def _dump(path: Path, event_type: str | None) -> int:
    with _open_existing(path) as store:
        events = store.events(event_type)
    for event in events:
        sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    return 0


def _summary(path: Path) -> int:
    with _open_existing(path) as store:
        by_type = store.count_by_type()
        summary = {
            "events": sum(by_type.values()),
            "by_type": by_type,
            "duplicates": store.duplicates(),
            "batches": store.batches(),
        }
    print(json.dumps(summary), flush=True)
    return 0


def _bind(host: str, port: int) -> socket.socket:
    """A bound TCP socket, so that the port is known before uvicorn starts serving."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise _CliError(f"cannot listen on {host}:{port}: {exc}", EXIT_FAILURE) from exc
    try:
        # Lets a restarted receiver take its port back while old connections linger.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise _CliError(f"cannot listen on {host}:{port}: {exc}", EXIT_FAILURE) from exc
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class _Server(uvicorn.Server):
    """uvicorn's server, announcing on stdout once it accepts connections."""

    def __init__(self, config: uvicorn.Config, banner: str) -> None:
        super().__init__(config)
        self._banner = banner

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            print(self._banner, flush=True)


@contextmanager
def _stop_on_signals(server: _Server) -> Iterator[None]:
    """Ask the server to stop on SIGTERM/SIGINT, and absorb the signal afterwards.

    uvicorn captures the signals while it serves and, once shut down, raises the
    captured signal again against the handlers it found; with these handlers in
    place that ends in a clean exit instead of a kill or a KeyboardInterrupt.
    """

    def stop(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve(args: argparse.Namespace) -> int:
    api_key = _read_secret(args.api_key_file, "API key", "--api-key-file")
    signing_secret = _read_secret(
        args.signing_secret_file, "signing secret", "--signing-secret-file"
    )
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Only the receiver's own lines get louder; asyncio's debug chatter stays out.
    logging.getLogger("edgeagent").setLevel(args.log_level.upper())
    sock = _bind(args.listen, args.port)
    try:
        store = _open(args.db)
    except _CliError:
        sock.close()
        raise
    try:
        app = build_app(
            store,
            api_key=api_key,
            signing_secret=signing_secret,
            vendor_id=args.vendor_id,
            allow=args.allow,
        )
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            server_header=False,
            # The allowlist must judge the socket's peer; X-Forwarded-For is
            # whatever the client chose to write.
            proxy_headers=False,
        )
        server = _Server(config, f"receiver listening on {_url(sock)}")
        with _stop_on_signals(server):
            server.run(sockets=[sock])
    finally:
        sock.close()
        store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run `edgeagent receiver` with `argv` (default: the process arguments)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.type is not None and not args.dump:
        parser.error("--type only applies to --dump")
    try:
        if args.dump:
            return _dump(args.db, args.type)
        if args.summary:
            return _summary(args.db)
        return _serve(args)
    except _CliError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    raise SystemExit(main())
