"""Kept for compatibility: handlers written before `serving.kit` import these from here.

New code imports `serving.kit`, the public surface for model authors; these are the
same classes, not copies.
"""

from __future__ import annotations

from serving.kit.errors import InvalidInput, ModelUnavailable

__all__ = ["InvalidInput", "ModelUnavailable"]
