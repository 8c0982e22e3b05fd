"""The coordinator and a worker with step signing off: the baseline of what signing costs.

``python -m benchmarks.unsigned_services coordinator`` / ``worker [--concurrency N]`` run
the same services as ``agentic coordinator`` / ``agentic worker``, except that the
coordinator signs nothing and the worker verifies nothing. Only the benchmarks start them
(``benchmarks.nats_stack.running_stack(secure=False)``), on a nats-server without
authentication, to measure the pipeline with neither, in the same run as with both.
"""

from __future__ import annotations

import argparse
import asyncio

from agentic.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.unsigned_services")
    parser.add_argument("service", choices=["coordinator", "worker"])
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args(argv)
    from services.coordinator import CoordinatorService
    from services.lifecycle import configure_logging, serve
    from services.worker import WorkerService

    settings = get_settings()
    configure_logging(settings.log_level)
    if args.service == "coordinator":
        service = CoordinatorService(settings, sign_steps=False)
    else:
        service = WorkerService(settings, concurrency=args.concurrency, verify_steps=False)
    return asyncio.run(serve(service))


if __name__ == "__main__":
    raise SystemExit(main())
