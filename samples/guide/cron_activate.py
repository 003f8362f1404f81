"""docs/cron.md: activating a cron trigger from the host's own scheduler."""

from squidmesh_sdk import Client, CronStart


def activate(client: Client) -> CronStart:
    window = {"start_at": "2026-03-27T07:00:00+00:00", "end_at": "2026-03-28T07:00:00+00:00"}
    # .outcome: "started", or "duplicate" / "skipped" with the run that holds the window
    return client.start_cron_trigger("daily_digest", "daily", {"intended_window": window})
