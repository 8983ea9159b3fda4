"""Errors the API answers with a status code and a one-line reason."""

from __future__ import annotations

from meshinsights.errors import MeshInsightsError

__all__ = ["ApiError", "NotFound", "BadRequest"]


class ApiError(MeshInsightsError):
    """A request the API refuses; ``status`` is the HTTP status it answers with."""

    status = 400


class BadRequest(ApiError):
    status = 400


class NotFound(ApiError):
    status = 404
