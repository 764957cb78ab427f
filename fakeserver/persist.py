"""The fake's jobs kept in a file across a restart (`--state-file`), as Segmind keeps its
runs when one of its servers restarts: a gateway drill can stop the fake mid-run, start it
again on the same port, and find every run it was following, at the same stage.

What is kept: each job (its plan, its polls), the accounts' credits, and a virtual clock's
time, which a restarted fake resumes from rather than from its epoch. Written whole to a
temporary file and renamed over the old one after every change that matters (a submit, a
poll, a clock move), so a fake killed at any moment leaves the last whole state.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .jobs import Job, JobPlan, Outcome

__all__ = ["StateFile"]

VERSION = 1


class StateFile:
    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, Any] | None:
        """What a previous run of the fake saved; None if there is no file yet."""
        try:
            saved: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"--state-file {self.path} cannot be read ({exc}); delete it to start afresh"
            ) from None
        if saved.get("version") != VERSION:
            raise ValueError(
                f"--state-file {self.path} was written by another version of the fake; "
                "delete it to start afresh"
            )
        return saved

    def save(self, now: float, jobs: list[Job], credits: dict[str, float]) -> None:
        document = {
            "version": VERSION,
            "now": now,
            "credits": credits,
            "jobs": [_job_to_json(job) for job in jobs],
        }
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(document))
        os.replace(temporary, self.path)


def _job_to_json(job: Job) -> dict[str, Any]:
    document = asdict(job)
    document["plan"]["outcome"] = job.plan.outcome.value
    return document


def job_from_json(document: dict[str, Any]) -> Job:
    plan = dict(document["plan"])
    plan["outcome"] = Outcome(plan["outcome"])
    return Job(**{**document, "plan": JobPlan(**plan)})
