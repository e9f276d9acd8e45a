"""`ocpp-gateway remote ...`: act on live charge points through a running gateway's UI API.

The token comes from the environment (`OCPP_GATEWAY_TOKEN`), never from the command line.
Prints the gateway's answer as JSON; exits 1 when the answer is an error.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from typing import Any

import click
import orjson
import websockets

TOKEN_ENV = "OCPP_GATEWAY_TOKEN"


async def _request(url: str, token: str, message: dict[str, Any], timeout: float) -> dict[str, Any]:
    request_id = uuid.uuid4().hex[:12]
    headers = {"Authorization": f"Bearer {token}"}
    async with websockets.connect(url, additional_headers=headers, open_timeout=10) as ws:
        welcome = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
        if welcome.get("type") != "welcome":
            return {"type": "error", "code": "unauthorized", "reason": str(welcome)}
        await ws.send(orjson.dumps({**message, "id": request_id}).decode())
        while True:
            answer = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
            if answer.get("id") == request_id:
                return answer


def _run(ctx: click.Context, message: dict[str, Any]) -> None:
    token = os.environ.get(TOKEN_ENV)
    if not token:
        click.echo(f"set {TOKEN_ENV} to a UI token (ocpp-gateway ui token create)", err=True)
        sys.exit(2)
    try:
        answer = asyncio.run(_request(ctx.obj["url"], token, message, ctx.obj["timeout"]))
    except websockets.exceptions.InvalidStatus as refused:
        click.echo(f"refused by the gateway: HTTP {refused.response.status_code}", err=True)
        sys.exit(1)
    except (OSError, TimeoutError) as exc:
        click.echo(f"cannot reach the gateway at {ctx.obj['url']}: {exc}", err=True)
        sys.exit(1)
    click.echo(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode())
    if answer.get("type") == "error":
        sys.exit(1)


@click.group("remote")
@click.option(
    "--url", default="ws://127.0.0.1:9000/ui", show_default=True, help="The gateway's UI API."
)
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for an answer.")
@click.pass_context
def remote(ctx: click.Context, url: str, timeout: float) -> None:
    """Act on live charge points through a running gateway (token in $OCPP_GATEWAY_TOKEN)."""
    ctx.obj = {"url": url, "timeout": timeout}


@remote.command("list")
@click.pass_context
def remote_list(ctx: click.Context) -> None:
    """List the connected charge points."""
    _run(ctx, {"type": "list"})


@remote.command("command")
@click.argument("identity")
@click.argument("action")
@click.option("--payload", default="{}", help="The CALL payload as JSON.")
@click.pass_context
def remote_command(ctx: click.Context, identity: str, action: str, payload: str) -> None:
    """Send ACTION to IDENTITY and print the charge point's answer."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None
    _run(ctx, {"type": "command", "identity": identity, "action": action, "payload": body})


@remote.command("rotate-password")
@click.argument("identity")
@click.pass_context
def rotate_password(ctx: click.Context, identity: str) -> None:
    """Give IDENTITY a new Basic-auth password (stored only if the charge point accepts it)."""
    _run(ctx, {"type": "security_action", "identity": identity, "action": "rotate_password"})


@remote.command("upgrade-profile")
@click.argument("identity")
@click.option("--profile", type=click.IntRange(1, 3), required=True)
@click.pass_context
def upgrade_profile(ctx: click.Context, identity: str, profile: int) -> None:
    """Raise IDENTITY's security profile (the old one is refused afterwards)."""
    _run(
        ctx,
        {
            "type": "security_action",
            "identity": identity,
            "action": "upgrade_profile",
            "profile": profile,
        },
    )


@remote.command("delete-certificate")
@click.argument("identity")
@click.option("--serial", required=True, help="Serial number (hex) of the installed certificate.")
@click.pass_context
def delete_certificate(ctx: click.Context, identity: str, serial: str) -> None:
    """Delete an installed certificate, using the hash data the charge point reports."""
    _run(
        ctx,
        {
            "type": "security_action",
            "identity": identity,
            "action": "delete_certificate",
            "serial_number": serial,
        },
    )
