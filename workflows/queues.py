"""Task queue names (public: operators start workflows on `deallens`).

Provider calls run on their own queue so that a task-queue-wide rate limit
(`max_task_queue_activities_per_second`) holds across every worker machine. A provider queue
is named after the queue its workflow runs on (`deallens` → `deallens-alphavantage`), so a
test's fresh queue gets fresh provider queues too.
"""

DEFAULT = "deallens"
ALPHAVANTAGE_SUFFIX = "alphavantage"
NEWSAPI_SUFFIX = "newsapi"
LLM_SUFFIX = "llm"


def provider_queue(base: str, suffix: str) -> str:
    return f"{base}-{suffix}"


ALPHAVANTAGE = provider_queue(DEFAULT, ALPHAVANTAGE_SUFFIX)
NEWSAPI = provider_queue(DEFAULT, NEWSAPI_SUFFIX)
LLM = provider_queue(DEFAULT, LLM_SUFFIX)
