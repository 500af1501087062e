"""The custom search attributes, defined once: what the Web UI and `temporal workflow list
--query` can filter DealLens workflows by ("what happened to AAPL's alert today?").

Search attributes are indexed in the server's visibility store in clear text (never passed
through the payload codec), so they hold only public market identifiers and opaque ids:
symbols, alert ids, company ids, alert kinds. Never a name, an email address or an alert's text.

Every server a worker talks to must know them before a workflow sets one (the server refuses
an unknown attribute): `make run` starts its dev server with them, `python schedules.py apply`
and the worker register them on a cluster (`ensure_registered`, idempotent), and the test
fixtures do the same on their servers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)

if TYPE_CHECKING:
    from temporalio.client import Client

    from deallens.contracts import FiringRef

# Ticker symbols a workflow synced, evaluated, fired or notified about.
SYMBOLS = SearchAttributeKey.for_keyword_list("DealLensSymbols")
# alerts.id of the alerts a workflow fired or notified (as text: there is no integer list type).
ALERT_IDS = SearchAttributeKey.for_keyword_list("DealLensAlertIds")
# The alert kind (price, volume, news, deal) of a monitor or a notification.
KIND = SearchAttributeKey.for_keyword("DealLensKind")
# companies.id of the companies a news ingestion or an insights run works on.
COMPANY_IDS = SearchAttributeKey.for_keyword_list("DealLensCompanyIds")

ALL: tuple[SearchAttributeKey, ...] = (SYMBOLS, ALERT_IDS, KIND, COMPANY_IDS)

# The server caps a keyword list's size (and all attributes of a workflow together): a run
# lists at most this many values; beyond that, the workflow's result has them all.
MAX_VALUES = 100

# Behind workflow.patched: upserting is a new command, which older histories did not record.
UPSERT_PATCH = "search-attributes-upsert"


def capped(values: Iterable[object]) -> list[str]:
    """Distinct values as text, sorted, at most MAX_VALUES (stable across replays)."""
    return sorted({str(v) for v in values if v is not None and str(v) != ""})[:MAX_VALUES]


def attributes(
    *, symbols: Iterable[str] = (), alert_ids: Iterable[int] = (), kind: str | None = None
) -> TypedSearchAttributes:
    """The attributes for starting a workflow (`search_attributes=`); empty ones are left out."""
    pairs: list[SearchAttributePair] = []
    if shown := capped(symbols):
        pairs.append(SearchAttributePair(SYMBOLS, shown))
    if ids := capped(alert_ids):
        pairs.append(SearchAttributePair(ALERT_IDS, ids))
    if kind:
        pairs.append(SearchAttributePair(KIND, kind))
    return TypedSearchAttributes(pairs)


def updates(
    *, symbols: Iterable[str] = (), alert_ids: Iterable[int] = (), company_ids: Iterable[int] = ()
) -> list[SearchAttributeUpdate]:
    """The upserts for values known only after an activity (`workflow.upsert_search_attributes`)."""
    result: list[SearchAttributeUpdate] = []
    if shown := capped(symbols):
        result.append(SYMBOLS.value_set(shown))
    if ids := capped(alert_ids):
        result.append(ALERT_IDS.value_set(ids))
    if companies := capped(company_ids):
        result.append(COMPANY_IDS.value_set(companies))
    return result


def notify_start_options(ref: FiringRef, started_by: str) -> dict[str, object]:
    """What a notify-<alert_history_id> start carries (the monitor's child, a `notifications
    retry`): which alert, which user id, which channels; searchable by symbol, alert id, kind."""
    channels = ", ".join(ref.channels) or "no channel"
    what = " ".join(p for p in (ref.alert_type, ref.symbol) if p) or ref.kind
    return {
        "search_attributes": attributes(
            symbols=[ref.symbol] if ref.symbol else [], alert_ids=[ref.alert_id], kind=ref.kind
        ),
        "static_summary": f"alert {ref.alert_id} ({what}) for user {ref.user_id} via {channels}",
        "static_details": (
            f"Firing {ref.history_id} (alert_history) of {ref.kind} alert {ref.alert_id}, user id {ref.user_id}; "
            f"channels the user has: {channels}. Started by {started_by}. Each channel is delivered "
            "once (notification_deliveries); failures are parked: `starter.py notifications failed`."
        ),
    }


def cli_flags() -> list[str]:
    """`temporal server start-dev` flags that register them all (`make run`, test servers)."""
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}={key._metadata_type}"]
    return flags


async def ensure_registered(client: Client, namespace: str | None = None) -> list[str]:
    """Register the attributes the namespace lacks; returns the names added (none: all there).

    Idempotent: a second call adds nothing. Uses the OperatorService (self-hosted clusters and
    dev servers; on Temporal Cloud create them with `tcld` or in the Cloud UI instead).
    """
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
    from temporalio.service import RPCError, RPCStatusCode
    namespace = namespace or client.namespace
    try:
        listed = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
        known = set(listed.custom_attributes)
    except RPCError as error:
        # The time-skipping test server adds attributes but cannot list them.
        if error.status is not RPCStatusCode.UNIMPLEMENTED:
            raise
        known = set()
    missing = {
        # SearchAttributeIndexedValueType mirrors the API's IndexedValueType numbers.
        key.name: int(key.indexed_value_type)
        for key in ALL
        if key.name not in known
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    return sorted(missing)
