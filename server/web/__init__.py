"""The web side of ``smartmeter serve``: request context (database pool, auth), data and stream routes, pages.

``smartmeter.server.api.create_app`` builds the app from these parts.
"""
