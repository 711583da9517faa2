"""The web UI: server-rendered pages (Jinja2) and a small script for live updates and selection."""
