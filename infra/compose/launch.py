"""One example-service process in a container: ``prepare``, ``edge``, ``worklogs`` or
``console`` (the image's command; compose.yaml and the Kubernetes manifests run it).

``tenancy demo`` starts all three services in one process tree on loopback; a deployment
runs each on its own, several replicas apiece, so this starts exactly one of them, bound
to ``--host``/``--port``, on the settings of the environment (``TENANCY_*``):

- ``prepare``: the demo tenants, their keys, the dev issuer and the edge's keyring, once,
  after ``tenancy db migrate`` and before any service starts (a one-shot job);
- ``edge``: users' tokens in, context tokens out to ``--worklogs-url``;
- ``worklogs``: context tokens from the edge only;
- ``console``: the tenant admin console and the ticketing webhook.
"""

from __future__ import annotations

import argparse
import logging
import sys

SERVICES = ("prepare", "edge", "worklogs", "console")


def parser() -> argparse.ArgumentParser:
    """The launcher's arguments (the tests read the manifests' commands with it)."""
    found = argparse.ArgumentParser(prog="launch.py", description=__doc__)
    found.add_argument("service", choices=SERVICES)
    found.add_argument("--host", default="0.0.0.0")  # noqa: S104  (inside a container)
    found.add_argument("--port", type=int, default=8000)
    found.add_argument("--worklogs-url", help="the worklogs backend (edge only)")
    return found


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from tenancy.settings import Settings

    settings = Settings.from_env()
    if args.service == "prepare":
        from tenancy_examples.demo_state import prepare

        registry = prepare(settings)
        print("prepared tenants: " + ", ".join(t.slug for t in registry.list()), flush=True)
        return 0

    import uvicorn
    from starlette.applications import Starlette

    app: Starlette
    if args.service == "edge":
        if not args.worklogs_url:
            print("launch.py edge: --worklogs-url is required", file=sys.stderr)
            return 2
        from tenancy_examples.edge.main import build_edge

        app = build_edge(settings, worklogs_url=args.worklogs_url)
    elif args.service == "worklogs":
        from tenancy_examples.worklogs.main import build_worklogs

        app = build_worklogs(settings)
    else:
        from tenancy_examples.console.main import build_console

        app = build_console(settings)
    # Behind HAProxy or a Kubernetes Service: no access log per request (the services
    # log their own events), the client address as the proxy saw it is not trusted.
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
