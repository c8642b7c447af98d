"""SmartMeter: read a household electricity meter with a camera and turn photos into trustworthy energy data.

This package is the one shared place for what several parts need: settings, domain types,
the image-store interface and the exceptions. ``ocr``, ``raspi``, ``server``, ``backup_dropbox``
and ``simulator`` build on it; it never imports them (except the CLI, which dispatches lazily).
"""

__version__ = "0.1.0"
