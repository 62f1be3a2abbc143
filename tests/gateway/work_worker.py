"""A self-hosted worker in a process of its own, for crash tests: the SDK's own
`EnvironmentWorker`, unmodified, whose `bash` tool writes the command it was given to
`started` (so a test knows the call is running) and then returns only once `release`
exists, answering `from the first worker`.

`python -m tests.gateway.work_worker URL ENVIRONMENT_ID ENVIRONMENT_KEY STARTED RELEASE`
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from anthropic import AsyncAnthropic
from anthropic.lib.tools import beta_tool

ANSWER = "from the first worker"


async def work(url: str, environment_id: str, key: str, started: Path, release: Path) -> None:
    # A sync tool, as a blocking one would be: the SDK runs it on a thread of its own.
    @beta_tool
    def bash(command: str) -> str:
        """Run a shell command."""
        started.write_text(command)
        while not release.exists():
            time.sleep(0.05)
        return ANSWER

    async with AsyncAnthropic(base_url=url, auth_token=key, max_retries=0) as client:
        worker = client.beta.environments.work.worker(
            environment_id=environment_id, environment_key=key, tools=[bash], max_idle=1.0
        )
        await worker.run()


if __name__ == "__main__":
    url, environment_id, key, started, release = sys.argv[1:]
    asyncio.run(work(url, environment_id, key, Path(started), Path(release)))
