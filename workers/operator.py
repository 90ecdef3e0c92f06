"""Worker jobs that carry out what an operator asked through the API and that need Slack.

The web process never calls Slack (it must answer fast and hold no Slack credential); it enqueues
these by dotted path (``triage.api.actions``) and a worker tells the story.
"""

from __future__ import annotations

from typing import Any

from triage import logs
from triage.lifecycle import StoryStatus
from triage.summary import simple_message
from workers import context, notify


def retry_canceled(triage_id: str, run_id: int, origin: int, reason: str = "") -> dict[str, Any]:
    """A scheduled retry was canceled: the story ends (gave up) and says "retry canceled by an operator"."""
    with logs.bound(triage_id, run_id=run_id):
        ctx = context.current()
        story = ctx.store.story(origin)
        sentence = f"Retry of run {run_id} canceled by an operator" + (f" ({reason})" if reason else "")
        if StoryStatus(story.status).can_move_to(StoryStatus.GAVE_UP):
            story = ctx.store.update_story(origin, status=StoryStatus.GAVE_UP)
        notify.note(ctx, f"{run_id}:retry-canceled",
                    simple_message("info", f"{story.schedule_name or 'Bolt run'}: retry canceled", sentence + "."),
                    story=story)
        notify.refresh(ctx, story, (str(StoryStatus.GAVE_UP), sentence))
        return {"status": "told", "run_id": run_id}
