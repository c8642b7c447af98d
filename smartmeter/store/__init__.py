"""Image stores: where photos live between the camera and the worker. Chosen by ``store.backend``."""

from __future__ import annotations

from smartmeter.settings import StoreSettings
from smartmeter.store.base import ImageStore, ListResult


def open_store(settings: StoreSettings) -> ImageStore:
    """Open the configured image store (local folder by default, or Dropbox through the SDK or the lean HTTP client)."""
    if settings.backend == "dropbox" and settings.dropbox.client == "http":
        from smartmeter.store.dropbox_http import DropboxHttpStore

        return DropboxHttpStore.from_settings(settings.dropbox)
    if settings.backend == "dropbox":
        from smartmeter.store.dropbox_store import DropboxStore

        return DropboxStore.from_settings(settings.dropbox)
    from smartmeter.store.local import LocalStore

    return LocalStore(settings.local.root)


__all__ = ["ImageStore", "ListResult", "open_store"]
