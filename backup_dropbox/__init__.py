"""Backup tool: archive photos from the image store (Dropbox) to a local folder."""
