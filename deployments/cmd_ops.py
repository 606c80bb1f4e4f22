"""Operations commands, registered on `vbs-backup` when imported:

    vbs-backup serve [--plan plan.yaml] [--credentials BLOCK] [--limit N]
    vbs-backup blocks register NAME [--cloud ...] [--region ...] [--project-id ...] [--ak ...] [--check]
    vbs-backup alerts setup --webhook URL | --slack URL | --teams URL [--deployment NAME ...]

They talk to the Prefect server named by PREFECT_API_URL (or the active Prefect profile). Prefect is
imported inside each command, so `vbs-backup --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from vbs_backup.cli import app

__all__ = ["alerts_app", "blocks_app"]

blocks_app = typer.Typer(help="Prefect blocks: saved cloud credentials.", no_args_is_help=True)
alerts_app = typer.Typer(help="Alerts on failed runs (Prefect automations).", no_args_is_help=True)
app.add_typer(blocks_app, name="blocks")
app.add_typer(alerts_app, name="alerts")


def _require_api() -> str:
    """The Prefect server's API URL; without one, Prefect would start a throwaway server that nothing
    else can see, so refuse with the fix."""
    import os

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        typer.echo(
            "No Prefect server configured: set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api) or "
            "`prefect config set PREFECT_API_URL=...`.",
            err=True,
        )
        raise typer.Exit(2)
    return url


@app.command()
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
    from vbs_backup.config import PlanError, load_plan

    try:
        plan = load_plan(plan_file) if plan_file else None
    except PlanError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    _require_api()
    from .serve import serve_catalog

    serve_catalog(plan=plan, credentials=credentials, limit=limit)


@blocks_app.command("register")
def register(
    name: Annotated[str, typer.Argument(help="Block name, e.g. vbs-prod; runs name it as `credentials`.")],
    cloud: Annotated[str | None, typer.Option(help="huaweicloud, flexibleengine or otc.")] = None,
    region: Annotated[str | None, typer.Option(help="e.g. eu-west-0.")] = None,
    project_id: Annotated[str | None, typer.Option(help="32 lowercase hex.")] = None,
    ak: Annotated[str | None, typer.Option(help="Access key (the SK comes from VBS_BACKUP_SK).")] = None,
    username: Annotated[
        str | None, typer.Option(help="IAM user (password from VBS_BACKUP_PASSWORD).")
    ] = None,
    domain: Annotated[str | None, typer.Option(help="IAM domain (account) name.")] = None,
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
    Secrets are never taken from the command line (shell history): environment or --ask-secrets."""
    from pydantic import SecretStr, ValidationError

    from vbs_backup.config import ConfigError, Settings

    overrides = {
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
    _require_api()
    from .blocks import block_from_settings

    block = block_from_settings(settings)
    for field, value in {
        "iam_endpoint": iam_endpoint,
        "ecs_endpoint": ecs_endpoint,
        "evs_endpoint": evs_endpoint,
        "vbs_endpoint": vbs_endpoint,
    }.items():
        if value:
            setattr(block, field, value)
    if ask_secrets:
        if block.ak:
            block.sk = SecretStr(typer.prompt("SK", hide_input=True))
        else:
            block.password = SecretStr(typer.prompt("IAM password", hide_input=True))
    try:
        checked = block.settings()
        mode = checked.credentials_mode()
        if not checked.project_id:
            raise ConfigError("no project id: set VBS_BACKUP_PROJECT_ID or --project-id")
        if check:
            _check_connection(checked)
    except (ConfigError, ValidationError) as exc:
        typer.echo(f"not saved: {exc}", err=True)
        raise typer.Exit(2) from None
    block.save(name, overwrite=True)
    auth = "AK/SK" if mode == "aksk" else "IAM user"
    typer.echo(
        f"saved VBS credentials block {name!r}: {checked.cloud} {checked.region}, project "
        f"{checked.project_id}, {auth}; runs use it with the parameter credentials={name}"
    )


def _check_connection(settings) -> None:
    import asyncio

    from vbs_backup.cloud.errors import CloudError
    from vbs_backup.config import ConfigError
    from vbs_backup.connection import connect

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
) -> None:
    """Create or update the automation that notifies these targets when a run ends Failed, Crashed or
    TimedOut. Run it again to change the targets: it replaces them."""
    import asyncio

    given = {"webhook": webhook, "slack": slack, "teams": teams}
    if not any(given.values()):
        typer.echo("give at least one of --webhook, --slack, --teams", err=True)
        raise typer.Exit(2)
    for kind, url in given.items():
        if url and urlsplit(url).scheme not in ("http", "https"):
            typer.echo(f"--{kind} must be an http(s) URL", err=True)
            raise typer.Exit(2)
    _require_api()
    from .alerts import Notifier, setup_alerts

    targets = {Notifier(kind): url for kind, url in given.items() if url}
    result = asyncio.run(setup_alerts(targets, deployments=deployment or None))
    # Only hosts: webhook URLs carry their token in the path.
    where = ", ".join(f"{kind} ({urlsplit(url).hostname})" for kind, url in given.items() if url)
    verb = "created" if result.created else "updated"
    typer.echo(
        f"automation {verb} ({result.automation_id}): a run of {', '.join(result.deployments)} that ends "
        f"Failed, Crashed or TimedOut notifies {where}"
    )


@alerts_app.command("listen")
def alerts_listen(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 9000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Print every alert POSTed to this address: a local webhook to try `alerts setup --webhook` with."""
    import json
    from datetime import datetime
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                body = json.loads(raw)
                text = f"{body['subject']}\n{body['body']}"
            except (ValueError, KeyError, TypeError):
                text = raw.decode(errors="replace")
            typer.echo(f"--- alert received {datetime.now():%H:%M:%S}\n{text}")
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:  # one line per alert is enough
            pass

    server = HTTPServer((host, port), Handler)
    typer.echo(f"listening for alerts on http://{host}:{port}/ (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
