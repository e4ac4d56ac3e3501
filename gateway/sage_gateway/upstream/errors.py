"""What can go wrong on the hop to a replica, in the terms the proxy decides by: whether the
replica can have started on the request (only then is moving it to another replica unsafe)."""

from __future__ import annotations


class UpstreamError(Exception):
    """The replica could not be reached, or its answer could not be read whole."""


class NotStarted(UpstreamError):
    """The request never reached a replica that could act on it: the connection could not be
    opened, or closed before any byte of an answer came. Safe to try another replica."""


class ConnectFailed(NotStarted):
    """Opening a connection failed (refused, unreachable, reset)."""


class ConnectTimeout(ConnectFailed):
    """Opening a connection, or waiting for a free one, took too long."""


class Disconnected(NotStarted):
    """The replica closed the connection before its answer began."""


class ReadTimeout(UpstreamError, TimeoutError):
    """The replica sent nothing for longer than the read timeout."""


class BrokenResponse(UpstreamError):
    """The answer began but did not end: the replica closed the connection, sent bytes that are
    not HTTP, or the response was closed on purpose (a drain that ran out)."""
