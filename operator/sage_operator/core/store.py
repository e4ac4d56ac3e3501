"""The operator's only contact with the Kubernetes API (through sage_kube), for every kind alike:
read, list, server-side apply, patch, write status, post Events. API errors other than "not
found" reach the caller as sage_kube's ApiError."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from sage_kube import ApiError, Conflict, KubeClient, NotFound, resource_path
from sage_kube.client import PatchType
from sage_operator.core.kinds import EVENT, Kind, kind_of
from sage_operator.core.metadata import covers

log = logging.getLogger(__name__)


def _path(kind: Kind, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
    return resource_path(kind.api_version, kind.plural, namespace, name, subresource)


class ForeignObject(Exception):
    """A same-named object exists that this operator did not create for this owner: it is never
    taken over (its owner's status says so; the user renames or deletes one of them)."""

    def __init__(self, observed: dict[str, Any], owner: dict[str, Any]) -> None:
        kind = observed.get("kind") or "object"
        name = (observed.get("metadata") or {}).get("name")
        self.message = (
            f"a {kind} named {name} already exists and does not belong to this {owner.get('kind')}: "
            f"SAGE never takes over objects it did not create; rename or delete one of them"
        )
        super().__init__(self.message)


def _controller(metadata: dict[str, Any]) -> dict[str, Any]:
    references = metadata.get("ownerReferences") or []
    return next((ref for ref in references if ref.get("controller")), {})


def belongs_to_same_owner(observed: dict[str, Any], desired: dict[str, Any]) -> bool:
    """Whether `observed` is controlled by the owner `desired` names (same uid)."""
    ours = _controller(desired.get("metadata") or {})
    return bool(ours) and _controller(observed.get("metadata") or {}).get("uid") == ours.get("uid")


class KubeStore:
    def __init__(self, kube: KubeClient, namespaces: list[str]) -> None:
        self.kube = kube
        self.namespaces = namespaces
        """The watched namespaces; empty: all of them."""

    async def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.kube.get(_path(kind, namespace, name))
        except NotFound:
            return None

    async def list(self, kind: Kind, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every object of `kind` in `namespace`, or in every watched namespace."""
        scopes: list[str | None] = [namespace] if namespace else (list(self.namespaces) or [None])
        items: list[dict[str, Any]] = []
        for scope in scopes:
            items += (await self.kube.list(_path(kind, scope))).get("items") or []
        return items

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply with force: the operator owns every field it renders."""
        metadata = manifest["metadata"]
        return await self.kube.apply(_path(kind_of(manifest), metadata["namespace"], metadata["name"]), manifest)

    async def converge(self, desired: dict[str, Any], observed: dict[str, Any] | None) -> dict[str, Any]:
        """The object as it is once it holds what was rendered: applied only when `observed` (the
        cached object) differs (hand-edited, outdated), so a steady state writes nothing. A
        missing object is created (never applied over one the cache cannot see: the cache only
        holds labelled children); an object of another owner raises ForeignObject."""
        if observed is None:
            metadata = desired["metadata"]
            try:
                return await self.kube.create(_path(kind_of(desired), metadata["namespace"]), desired)
            except Conflict:
                observed = await self.get(kind_of(desired), metadata["namespace"], metadata["name"])
                if observed is None:
                    raise  # deleted again meanwhile: the next pass creates it
        if not belongs_to_same_owner(observed, desired):
            raise ForeignObject(observed, _controller(desired["metadata"]))
        if covers(observed, desired):
            return observed
        return await self.apply(desired)

    async def converge_all(self, pairs: Sequence[tuple[dict[str, Any], dict[str, Any] | None]]) -> None:
        """`converge` for (desired, observed) pairs that do not depend on each other, at once: an
        engine's new children cost one round trip instead of one each. Each is tried; the first
        failure in the given order is raised once all are done."""
        results = await asyncio.gather(*(self.converge(*pair) for pair in pairs), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def create_once(self, desired: dict[str, Any]) -> None:
        """For kinds the operator may create but never read (Secrets): created unless one of that
        name exists, which is then taken as it is (its name says what it holds)."""
        metadata = desired["metadata"]
        try:
            await self.kube.create(_path(kind_of(desired), metadata["namespace"]), desired)
        except Conflict:
            return

    async def patch(
        self, kind: Kind, namespace: str, name: str, body: Any, patch_type: PatchType = "merge"
    ) -> dict[str, Any]:
        return await self.kube.patch(_path(kind, namespace, name), body, patch_type=patch_type)

    async def scale(self, kind: Kind, namespace: str, name: str, replicas: int) -> None:
        """Sets spec.replicas through the scale subresource."""
        await self.kube.patch(_path(kind, namespace, name, "scale"), {"spec": {"replicas": replicas}})

    async def patch_status(self, kind: Kind, namespace: str, name: str, status: dict[str, Any]) -> str | None:
        """Writes the status; returns the object's new resourceVersion (None: deleted meanwhile,
        it needs no status)."""
        try:
            updated = await self.kube.patch(_path(kind, namespace, name, "status"), {"status": status})
        except NotFound:
            log.info("%s %s/%s was deleted before its status was written", kind.kind, namespace, name)
            return None
        return str((updated.get("metadata") or {}).get("resourceVersion") or "") or None

    async def post_event(self, event: dict[str, Any]) -> None:
        """Events are advisory: a failure to post one is logged, never fatal."""
        try:
            await self.kube.create(_path(EVENT, event["metadata"]["namespace"]), event)
        except ApiError as error:
            log.warning("could not post event %s: %s", event.get("reason"), error)
