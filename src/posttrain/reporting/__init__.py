"""Reporting: the run report (markdown, HTML, plots), live progress and experiment tracking."""
