"""Whether a request may teach the local tier: the one rule capture and audit share."""

from __future__ import annotations

from gateway.core.contracts import Privacy, Request

OPT_OUT_TAG = "learn"  # tags {"learn": "false"} keep a request out of training rows and audits


def may_learn_from(request: Request) -> bool:
    """False for a request that opted out, or that may not leave the box (LOCAL_ONLY)."""
    opted_out = request.tags.get(OPT_OUT_TAG, "").strip().lower() == "false"
    return not opted_out and request.privacy is not Privacy.LOCAL_ONLY
