"""Which cron times are due, in UTC, after the platform was (maybe) down for a while."""

from __future__ import annotations

from datetime import datetime, timedelta

from croniter import croniter  # type: ignore[import-untyped]

# A run whose time passed less than this long ago is on time, not missed.
ON_TIME_GRACE = timedelta(seconds=60)


def due_times(
    cron: str,
    last: datetime,
    now: datetime,
    *,
    catchup: str,
    max_catchup_runs: int,
    grace: timedelta = ON_TIME_GRACE,
) -> tuple[list[datetime], datetime]:
    """The cron times in ``(last, now]`` to fire, oldest first, and the new ``last``.

    With ``catchup == "catch_up"`` the missed times are fired too, at most the
    ``max_catchup_runs`` most recent; with ``"skip"`` only a time within ``grace`` of ``now``
    fires and older ones are skipped. Walking backwards from ``now`` keeps this cheap after a
    long outage of an every-minute schedule.
    """
    wanted = max_catchup_runs if catchup == "catch_up" else 1
    # croniter's get_prev is strictly before its start: start just after ``now``.
    walker = croniter(cron, now + timedelta(microseconds=1))
    times: list[datetime] = []
    while len(times) < wanted:
        moment: datetime = walker.get_prev(datetime).replace(fold=0)
        if moment <= last:
            break
        times.append(moment)
    if not times:
        return [], last
    newest = times[0]
    if catchup != "catch_up":
        times = [t for t in times if now - t <= grace]
    return sorted(times), newest
