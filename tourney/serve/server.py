"""Run the app under uvicorn. SIGTERM (or Ctrl-C) stops taking connections, lets the requests in
flight finish (up to drain_s; streams included), then closes the models and the request log."""
from __future__ import annotations

import logging
from typing import Callable

from tourney.errors import BackendError
from tourney.serve.app import create_app
from tourney.serve.config import ServeConfig


def serve(cfg: ServeConfig, *, on_ready: Callable[[str], None] | None = None, access_log: bool = False) -> None:
    """Serve until SIGTERM/SIGINT. Raises BackendError (one line) when the models cannot be loaded."""
    import uvicorn

    failed: list[str] = []

    def stop_on_failure(message: str) -> None:
        failed.append(message)
        server.should_exit = True

    app = create_app(cfg, on_load_failure=stop_on_failure)
    config = uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=access_log,
                            timeout_graceful_shutdown=max(1, int(round(cfg.drain_s))), lifespan="on")
    server = uvicorn.Server(config)
    if on_ready is not None:
        started = server.startup

        async def startup(sockets=None) -> None:
            await started(sockets=sockets)
            for s in server.servers:
                for sock in s.sockets:
                    host, port = sock.getsockname()[:2]
                    on_ready(f"http://{host}:{port}/v1")
                    return
        server.startup = startup  # type: ignore[method-assign]
    logging.getLogger("tourney.serve").setLevel(logging.INFO)
    server.run()
    if failed:
        raise BackendError(f"cannot load the models: {failed[0]}")
