"""A worker process for tests/test_llm_batch_workflow.py: the real deallens-llm queue of
worker.build_workers (so the registration is what is tested) plus the test-only workflow.

python -m tests.batch_worker QUEUE   (settings from the environment, like worker.py)
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from temporalio.worker import Worker

from deallens.config import load_settings
from temporal_client import connect
from tests.batch_support import BatchRunWorkflow
from worker import build_workers, open_resources
from workflows import queues


async def main(queue: str) -> None:
    settings = load_settings()
    async with open_resources(settings) as resources:
        client = await connect(settings)
        workers = build_workers(
            client, settings, resources, task_queue=queue, only=queues.provider_queue(queue, queues.LLM_SUFFIX)
        )
        workers.append(Worker(client, task_queue=queue, workflows=[BatchRunWorkflow]))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        async with contextlib.AsyncExitStack() as stack:
            for worker in workers:
                await stack.enter_async_context(worker)
            print("batch worker ready", flush=True)
            await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
