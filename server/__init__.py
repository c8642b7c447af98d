"""Server: worker, storage, analysis, API/dashboard, alerts, reports."""
