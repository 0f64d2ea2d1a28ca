"""`ohp serve`: the annotators' web app."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline import cli
from pipeline.config import ENVIRONMENT


@cli.app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    trusted_proxies: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated addresses or networks of the proxies in front (TLS), whose X-Forwarded-For and "
            f"-Proto are believed (default: ${ENVIRONMENT['trusted_proxies']}, else none)",
            show_default=False,
        ),
    ] = None,
    secure_cookies: Annotated[
        bool | None,
        typer.Option(
            "--secure-cookies/--no-secure-cookies",
            help="Send the session cookie over HTTPS only (default: "
            f"${ENVIRONMENT['secure_cookies']}, else only on requests that came by HTTPS)",
            show_default=False,
        ),
    ] = None,
    codebook: cli.CodebookOption = None,
    db: cli.DbOption = None,
) -> None:
    """The annotators' web app: recordings, transcripts with audio, review, corrections, search."""
    # Imported here: the web packages load only when serving.
    import uvicorn

    from pipeline.web import create_app
    from pipeline.web.logs import server_logging

    cli.open_codebook(codebook)  # its problems reported here, before the server starts
    served = cli.config.given(codebook=codebook, trusted_proxies=trusted_proxies, secure_cookies=secure_cookies)
    # The app reads forwarded headers itself, from the trusted proxies only; uvicorn's own would believe
    # any client on loopback.
    web = create_app(cli.open_store(db), served)
    uvicorn.run(web, host=host, port=port, proxy_headers=False, log_config=server_logging())
