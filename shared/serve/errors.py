"""Errors answered as an HTTP status and a one-line JSON body {"error": "..."}: mostly what a client did
wrong; 500 when the model itself failed on a batch, 503 while the server shuts down."""

from __future__ import annotations


class RequestError(Exception):
    """status: 400 malformed, 404 unknown model, 413 too large, 422 invalid input, 503 shutting down."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = one_line(message)


def one_line(text: str, limit: int = 500) -> str:
    """Whitespace runs (newlines included) become single spaces; long messages are cut at `limit`."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
