"""Operations commands:

    vbs-backup serve [--plan plan.yaml] [--credentials BLOCK] [--limit N]
    vbs-backup blocks register NAME [--cloud ...] [--region ...] [--project-id ...]
                               [--ak AK | --username USER [--domain ...]] [--check]
    vbs-backup alerts setup --webhook URL | --slack URL | --teams URL [--deployment NAME ...]
                            [--nightly-within-hours 26]

They talk to the Prefect server named by PREFECT_API_URL (or the active Prefect profile). Prefect is
imported inside each command, so `vbs-backup --help` stays fast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import typer

from vbs_backup.deployments.cli.running import require_api

__all__ = ["alerts_app", "blocks_app", "serve"]

blocks_app = typer.Typer(help="Prefect blocks: saved cloud credentials.", no_args_is_help=True)
alerts_app = typer.Typer(help="Alerts on failed or missing runs (Prefect automations).", no_args_is_help=True)


def serve(
    plan_file: Annotated[
        Path | None,
        typer.Option("--plan", exists=True, dir_okay=False, help="Plan YAML for the scheduled deployments."),
    ] = None,
    credentials: Annotated[
        str | None,
        typer.Option(help="VbsCredentials block name for every run (default: the VBS_BACKUP_ environment)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Runs at the same time (default: no limit).")
    ] = None,
) -> None:
    """Serve every vbs-backup deployment from this process (schedules, UI runs) until interrupted."""
    from vbs_backup.plan import PlanError, load_plan
    from vbs_backup.settings import ConfigError

    try:
        plan = load_plan(plan_file) if plan_file else None
    except PlanError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    require_api()
    from vbs_backup.deployments.serve import serve_catalog

    try:
        serve_catalog(plan=plan, credentials=credentials, limit=limit)
    except ConfigError as exc:  # e.g. no credentials block of that name: one line, nothing served
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@blocks_app.command("register")
def register(
    name: Annotated[
        str, typer.Argument(help="Block name, e.g. vbs-prod; runs pick it in their `credentials` parameter.")
    ],
    cloud: Annotated[str | None, typer.Option(help="huaweicloud, flexibleengine or otc.")] = None,
    region: Annotated[str | None, typer.Option(help="e.g. eu-west-0.")] = None,
    project_id: Annotated[str | None, typer.Option(help="32 lowercase hex.")] = None,
    ak: Annotated[
        str | None,
        typer.Option(help="AK/SK: the access key (the SK comes from VBS_BACKUP_SK); saves no IAM user."),
    ] = None,
    username: Annotated[
        str | None,
        typer.Option(help="IAM user: its name (password from VBS_BACKUP_PASSWORD); saves no AK/SK."),
    ] = None,
    domain: Annotated[str | None, typer.Option(help="IAM user: its domain (account) name.")] = None,
    endpoint: Annotated[str | None, typer.Option(help="One URL for every service.")] = None,
    iam_endpoint: Annotated[str | None, typer.Option(help="IAM URL (wins over --endpoint).")] = None,
    ecs_endpoint: Annotated[str | None, typer.Option(help="ECS URL (wins over --endpoint).")] = None,
    evs_endpoint: Annotated[str | None, typer.Option(help="EVS URL (wins over --endpoint).")] = None,
    vbs_endpoint: Annotated[str | None, typer.Option(help="VBS URL (wins over --endpoint).")] = None,
    ask_secrets: Annotated[
        bool,
        typer.Option("--ask-secrets", help="Type the SK or password (hidden) instead of the environment."),
    ] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Sign in and list one server before saving.")
    ] = False,
) -> None:
    """Save a VbsCredentials block from the current VBS_BACKUP_ settings, overridden by the options.

    A block holds one way to sign in: AK/SK (--ak, else VBS_BACKUP_AK) or an IAM user (--username or
    --domain, else VBS_BACKUP_USERNAME), nothing of the other; when the environment has both, choose with
    --ak or --username. Secrets are never taken from the command line (shell history): environment or
    --ask-secrets."""
    from pydantic import SecretStr, ValidationError

    from vbs_backup.settings import ConfigError, Settings

    overrides: dict[str, Any] = {
        "cloud": cloud,
        "region": region,
        "project_id": project_id,
        "ak": ak,
        "username": username,
        "domain": domain,
        "endpoint": endpoint,
    }
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        typer.echo(f"invalid settings: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        auth = _auth_method(
            settings, ak_given=ak is not None, user_given=username is not None or domain is not None
        )
    except ConfigError as exc:
        typer.echo(f"not saved: {exc}", err=True)
        raise typer.Exit(2) from None
    require_api()
    from vbs_backup.deployments.blocks import block_from_settings

    block = block_from_settings(settings, auth=auth)
    for field, value in {
        "iam_endpoint": iam_endpoint,
        "ecs_endpoint": ecs_endpoint,
        "evs_endpoint": evs_endpoint,
        "vbs_endpoint": vbs_endpoint,
    }.items():
        if value:
            setattr(block, field, value)
    if ask_secrets:
        if auth == "aksk":
            block.sk = SecretStr(typer.prompt("SK", hide_input=True))
        else:
            block.password = SecretStr(typer.prompt("IAM password", hide_input=True))
    try:
        checked = block.settings()
        _require_complete(checked, auth)
        if not checked.project_id:
            raise ConfigError("no project id: set VBS_BACKUP_PROJECT_ID or --project-id")
        if check:
            _check_connection(checked)
    except (ConfigError, ValidationError) as exc:
        typer.echo(f"not saved: {exc}", err=True)
        raise typer.Exit(2) from None
    block.save(name, overwrite=True)
    how = "AK/SK" if auth == "aksk" else "IAM user"
    typer.echo(
        f"saved VBS credentials block {name!r}: {checked.cloud} {checked.region}, project "
        f"{checked.project_id}, {how}; runs pick it in their `credentials` parameter (the run form's block "
        f"selector), `vbs-backup serve --credentials {name}` gives it to every served deployment"
    )


def _auth_method(settings, *, ak_given: bool, user_given: bool) -> Literal["aksk", "token"]:
    """The one way to sign in that `blocks register` saves: the options say it, else the settings (the
    environment) when they hold only one of AK and IAM user name. ConfigError (one line) otherwise."""
    from vbs_backup.settings import ConfigError

    if ak_given and user_given:
        raise ConfigError(
            "give either --ak (AK/SK) or --username/--domain (IAM user), not both: a block holds one way "
            "to sign in"
        )
    if ak_given or user_given:
        return "aksk" if ak_given else "token"
    if settings.ak and settings.username:
        raise ConfigError(
            "the environment has both VBS_BACKUP_AK and VBS_BACKUP_USERNAME: choose the block's way to sign "
            "in with --ak (AK/SK) or --username (IAM user)"
        )
    if settings.ak or settings.username:
        return "aksk" if settings.ak else "token"
    raise ConfigError(
        "no way to sign in: give --ak (AK/SK) or --username (IAM user), or set VBS_BACKUP_AK or "
        "VBS_BACKUP_USERNAME"
    )


def _require_complete(settings, auth: Literal["aksk", "token"]) -> None:
    """ConfigError (one line) naming what the chosen way to sign in lacks; never a value."""
    from vbs_backup.settings import ConfigError

    if auth == "aksk":
        needs = {"sk": "VBS_BACKUP_SK (or --ask-secrets)"}
        what = "AK/SK"
    else:
        needs = {
            "username": "VBS_BACKUP_USERNAME (or --username)",
            "password": "VBS_BACKUP_PASSWORD (or --ask-secrets)",
            "domain": "VBS_BACKUP_DOMAIN (or --domain)",
        }
        what = "the IAM user"
    missing = [source for field, source in needs.items() if not getattr(settings, field)]
    if missing:
        raise ConfigError(f"{what} needs {', '.join(missing)}")


def _check_connection(settings) -> None:
    import asyncio

    from vbs_backup.cloud.errors import CloudError
    from vbs_backup.connection import connect
    from vbs_backup.settings import ConfigError

    async def one_server() -> None:
        async with connect(settings) as client:
            await client.ecs.list_servers(limit=1)

    try:
        asyncio.run(one_server())
    except CloudError as exc:
        raise ConfigError(f"check failed: {exc}") from None


@alerts_app.command("setup")
def alerts_setup(
    webhook: Annotated[str | None, typer.Option(help="Generic webhook URL (JSON POST).")] = None,
    slack: Annotated[str | None, typer.Option(help="Slack incoming-webhook URL.")] = None,
    teams: Annotated[str | None, typer.Option(help="Microsoft Teams incoming-webhook URL.")] = None,
    deployment: Annotated[
        list[str] | None, typer.Option(help="Only these deployments (repeatable; default: all of them).")
    ] = None,
    nightly_within_hours: Annotated[
        float,
        typer.Option(
            min=0,
            help="Also alert when no run of nightly-backup has ended Completed for this many hours "
            "(checked by the Prefect server: it reports a stopped `serve`); 0: no such alert.",
        ),
    ] = 26,
    lost_after_minutes: Annotated[
        float,
        typer.Option(
            min=0,
            help="Mark Crashed (and so alert on) a run whose heartbeats stopped this long: its worker or "
            "machine died. Keep it above three PREFECT_FLOWS_HEARTBEAT_FREQUENCY (180 s); 0: off.",
        ),
    ] = 10,
) -> None:
    """Create or update the automations that notify these targets: a run that ends Failed, Crashed or
    TimedOut, and no Completed nightly-backup run for --nightly-within-hours; and the one that marks
    Crashed a run whose heartbeats stopped for --lost-after-minutes. Run it again to change the targets:
    it replaces them (an unchanged automation is left alone)."""
    import asyncio
    from datetime import timedelta

    given = {"webhook": webhook, "slack": slack, "teams": teams}
    if not any(given.values()):
        typer.echo("give at least one of --webhook, --slack, --teams", err=True)
        raise typer.Exit(2)
    for kind, url in given.items():
        if url and urlsplit(url).scheme not in ("http", "https"):
            typer.echo(f"--{kind} must be an http(s) URL", err=True)
            raise typer.Exit(2)
    within = timedelta(hours=nightly_within_hours) if nightly_within_hours else None
    if within is not None and within < timedelta(seconds=10):
        typer.echo(
            "--nightly-within-hours must be 0 (off) or at least 10 seconds (Prefect's minimum)", err=True
        )
        raise typer.Exit(2)
    lost_after = timedelta(minutes=lost_after_minutes) if lost_after_minutes else None
    if lost_after is not None and lost_after < timedelta(seconds=10):
        typer.echo(
            "--lost-after-minutes must be 0 (off) or at least 10 seconds (Prefect's minimum)", err=True
        )
        raise typer.Exit(2)
    require_api()
    from vbs_backup.deployments.alerts import NIGHTLY_DEPLOYMENT, Notifier, duration_text, setup_alerts

    targets = {Notifier(kind): url for kind, url in given.items() if url}
    result = asyncio.run(
        setup_alerts(targets, deployments=deployment or None, nightly_within=within, lost_after=lost_after)
    )
    # Only hosts: webhook URLs carry their token in the path.
    where = ", ".join(f"{kind} ({urlsplit(url).hostname})" for kind, url in given.items() if url)
    failures, nightly = result.failures, result.nightly
    typer.echo(
        f"automation {failures.outcome} ({failures.automation_id}) {failures.name!r}: a run of "
        f"{', '.join(result.deployments)} that ends Failed, Crashed or TimedOut notifies {where}"
    )
    if result.nightly_within is not None:
        restarts = " (its window starts now)" if nightly.outcome != "unchanged" else ""
        typer.echo(
            f"automation {nightly.outcome} ({nightly.automation_id}) {nightly.name!r}: no Completed run "
            f"of {NIGHTLY_DEPLOYMENT} for {duration_text(result.nightly_within)} notifies {where}{restarts}"
        )
    elif nightly.outcome == "deleted":
        typer.echo(f"automation deleted {nightly.name!r}: no watch on {NIGHTLY_DEPLOYMENT} runs")
    lost = result.lost
    if lost is not None and result.lost_after is not None:
        typer.echo(
            f"automation {lost.outcome} ({lost.automation_id}) {lost.name!r}: a run without a heartbeat for "
            f"{duration_text(result.lost_after)} is marked Crashed (and so notifies)"
        )
    elif lost is not None and lost.outcome == "deleted":
        typer.echo(f"automation deleted {lost.name!r}: lost runs are not marked Crashed")


# `alerts listen` is a local tool, but anyone who can reach its port can POST to it: what it prints must
# not drive the terminal, and a client must not hold it or its memory.
LISTEN_MAX_BODY = 64 * 1024
LISTEN_TIMEOUT = 10.0  # seconds for a whole request, however slowly it trickles in
_KEEP = ("\n", "\t")


def printable(text: str) -> str:
    """`text` safe for a terminal: control and format characters (ESC, CR, BEL, C1 controls such as
    CSI, bidirectional overrides, ...) shown as escapes like `\\x1b`; newlines and tabs kept."""
    import unicodedata

    out = []
    for char in text:
        if char in _KEEP or unicodedata.category(char) not in ("Cc", "Cf", "Cs", "Co", "Cn"):
            out.append(char)
        else:
            code = ord(char)
            out.append(
                f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
            )
    return "".join(out)


def alert_text(raw: bytes) -> str:
    """What to print for one POSTed alert: subject and body of the product's JSON, else the raw text."""
    import json

    try:
        body = json.loads(raw)
        text = f"{body['subject']}\n{body['body']}"
    except (ValueError, KeyError, TypeError):
        text = raw.decode(errors="replace")
    return printable(text)


def alert_server(
    host: str,
    port: int,
    echo: Callable[[str], object],
    *,
    max_body: int = LISTEN_MAX_BODY,
    timeout: float = LISTEN_TIMEOUT,
):
    """An HTTP server (not started) that passes the text of every alert POSTed to it to `echo`: bodies
    over `max_body` bytes get 413 unread; a request not complete within `timeout` seconds gets 408 (or
    the connection closed), however slowly its bytes trickle in."""
    import socket
    import threading
    from datetime import datetime
    from http import HTTPStatus
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def setup(self) -> None:
            # Each read's socket timeout, and below the whole request's (typeshed calls it a class variable).
            self.timeout = timeout  # type: ignore[misc]
            super().setup()
            self.expired = threading.Event()
            self.unread = False
            self.deadline = threading.Timer(timeout, self._expire)
            self.deadline.daemon = True
            self.deadline.start()

        def _expire(self) -> None:
            # Ends any read at once (end of file); the answer can still be written.
            self.expired.set()
            with contextlib.suppress(OSError):
                self.request.shutdown(socket.SHUT_RD)

        def finish(self) -> None:
            try:
                super().finish()  # the answer is out
                if self.unread:
                    # Closing on unread bytes sends a reset, which can destroy the answer before the
                    # client reads it: say we are done, then discard what comes until the deadline.
                    self.request.shutdown(socket.SHUT_WR)
                    while self.request.recv(65536):
                        pass
            except OSError:
                pass
            finally:
                self.deadline.cancel()

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            self.unread = True  # every refusal leaves (or may leave) part of the request unread
            super().send_error(code, message, explain)

        def do_POST(self) -> None:
            self.close_connection = True  # one alert per connection: no idle keep-alive either
            if self.expired.is_set():  # the headers came too slowly, perhaps only half of them
                self.send_error(HTTPStatus.REQUEST_TIMEOUT, "request too slow")
                return
            if self.headers.get("transfer-encoding"):
                self.send_error(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length")
                return
            try:
                length = int(self.headers.get("content-length") or 0)
                if length < 0:
                    raise ValueError
            except ValueError:
                self.send_error(HTTPStatus.BAD_REQUEST, "bad Content-Length")
                return
            if length > max_body:
                self.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"at most {max_body} bytes")
                return
            try:
                raw = self.rfile.read(length)
            except TimeoutError:
                raw = b""
            if len(raw) < length or self.expired.is_set():
                self.send_error(HTTPStatus.REQUEST_TIMEOUT, "request too slow")
                return
            echo(f"--- alert received {datetime.now():%H:%M:%S}\n{alert_text(raw)}")
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:  # one line per alert is enough
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            import sys

            if not isinstance(sys.exc_info()[1], OSError):  # a client that went away: no traceback
                super().handle_error(request, client_address)  # type: ignore[arg-type]

    return Server((host, port), Handler)


@alerts_app.command("listen")
def alerts_listen(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 9000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    timeout: Annotated[
        float, typer.Option(min=0.01, help="Seconds a client has to send one whole request.")
    ] = LISTEN_TIMEOUT,
) -> None:
    """Print every alert POSTed to this address: a local webhook to try `alerts setup --webhook` with.
    Control characters are shown escaped; bodies over 64 KiB are refused (413), slow requests cut (408)."""
    server = alert_server(host, port, typer.echo, timeout=timeout)
    typer.echo(f"listening for alerts on http://{host}:{port}/ (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
