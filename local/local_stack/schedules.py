"""Scheduled functions: every ``Type: Schedule`` (or ``ScheduleV2``) event runs at its rate.

Only ``rate(N minute|minutes|hour|hours|day|days)`` runs locally; ``cron(...)`` and ``at(...)`` are
reported and skipped. The first run comes one period after start, as with EventBridge. The function
is invoked asynchronously (``AsyncInvoker``: retries, destinations); its errors are logged and the
schedule goes on.

``period_override`` (``--schedule-period`` / ``LOCAL_SCHEDULE_PERIOD`` of ``python -m local_stack``)
replaces every rate with that many seconds, so that a test or a demo need not wait an hour.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from local_stack.async_invoke import AsyncInvoker
from local_stack.template import LocalNames, function_events

log = logging.getLogger("local_stack.events")

SCHEDULE_TYPES = ("Schedule", "ScheduleV2")
_RATE = re.compile(r"rate\(\s*(\d+)\s+(minutes?|hours?|days?)\s*\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def schedule_period(expression: str) -> float | None:
    """Seconds between two runs of ``rate(...)``; None for ``cron(...)``/``at(...)`` (not run locally).

    Raises ValueError for anything else.
    """
    text = expression.strip()
    if re.fullmatch(r"(cron|at)\(.*\)", text):
        return None
    match = _RATE.fullmatch(text)
    if not match or int(match[1]) < 1:
        raise ValueError(f"not a schedule expression: {expression!r}")
    return float(int(match[1]) * _UNIT_SECONDS[match[2].rstrip("s")])


@dataclass(frozen=True)
class ScheduleSubscription:
    """One ``Type: Schedule``/``ScheduleV2`` event of a function."""

    function_id: str
    event_id: str
    event_type: str  # "Schedule" (an EventBridge rule) or "ScheduleV2" (EventBridge Scheduler)
    expression: str
    enabled: bool
    name: str  # the rule's (or schedule's) name
    input: Any = None  # the event's Input, parsed; delivered instead of the default event

    @property
    def period(self) -> float | None:
        return schedule_period(self.expression)

    def describe(self, period_override: float | None = None) -> str:
        if not self.enabled or self.period is None:
            note = " (not run locally)"
        else:
            note = f" (every {period_override:g}s locally)" if period_override is not None else ""
        return f"{self.expression} -> {self.function_id}{note}"


def schedule_subscriptions(template: Mapping[str, Any], **names: Any) -> list[ScheduleSubscription]:
    """Every ``Schedule``/``ScheduleV2`` event of the template's functions, resolved to local names."""
    local = LocalNames(template, **names)
    subscriptions = []
    for function_id, event_id, event in function_events(template, *SCHEDULE_TYPES):
        event_type = event["Type"]
        props = local.resolve(event.get("Properties") or {})
        expression = props["Schedule"] if event_type == "Schedule" else props["ScheduleExpression"]
        enabled = props.get("Enabled", True) not in (False, "false", "False") and (
            str(props.get("State", "ENABLED")).upper() == "ENABLED"
        )
        # CloudFormation names the rule "<stack>-<FunctionEvent>-<random>"; no random part here.
        name = str(props.get("Name") or f"{local.stack_name}-{function_id}{event_id}")[:64]
        raw_input = props.get("Input")
        subscriptions.append(
            ScheduleSubscription(
                function_id=function_id,
                event_id=event_id,
                event_type=event_type,
                expression=str(expression),
                enabled=enabled,
                name=name,
                input=json.loads(raw_input) if isinstance(raw_input, str) else raw_input,
            )
        )
    return subscriptions


def scheduled_event(
    rule_arn: str, region: str, account_id: str, now: datetime | None = None
) -> dict[str, Any]:
    """The event an EventBridge rule's schedule sends to its Lambda target."""
    now = now or datetime.now(UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


class Scheduler:
    """Runs one schedule in a thread until ``stopping`` is set."""

    def __init__(
        self,
        subscription: ScheduleSubscription,
        invoker: AsyncInvoker,
        stopping: threading.Event,
        period_override: float | None = None,
    ) -> None:
        self.subscription = subscription
        self.invoker = invoker
        self.stopping = stopping
        self.period = period_override if period_override is not None else subscription.period

    def start(self) -> threading.Thread | None:
        """Start the thread; None when this schedule does not run locally (the reason is logged)."""
        sub = self.subscription
        if not sub.enabled:
            log.info("%s %s: disabled, not run", sub.function_id, sub.expression)
            return None
        if self.period is None:
            log.info("%s %s: only rate(...) schedules run locally", sub.function_id, sub.expression)
            return None
        thread = threading.Thread(
            target=self.run, name=f"schedule-{sub.function_id}{sub.event_id}", daemon=True
        )
        thread.start()
        return thread

    def event(self) -> Any:
        sub = self.subscription
        if sub.input is not None:
            return sub.input
        names = self.invoker.runtime.names
        if sub.event_type == "ScheduleV2":
            # EventBridge Scheduler passes the target's Input; without one, an empty object here.
            return {}
        rule_arn = f"arn:aws:events:{names['region']}:{names['account_id']}:rule/{sub.name}"
        return scheduled_event(rule_arn, names["region"], names["account_id"])

    def run(self) -> None:
        assert self.period is not None
        due = time.monotonic() + self.period  # the first run is one period after start
        while not self.stopping.wait(max(0.0, due - time.monotonic())):
            # One period after this run started: a late or slow run never makes a burst of runs.
            due = time.monotonic() + self.period
            try:
                self.invoker.invoke(self.subscription.function_id, self.event(), self.subscription.expression)
            except Exception:  # the invoker handles the function's errors; this is for anything else
                log.exception("%s: scheduled run failed", self.subscription.function_id)
