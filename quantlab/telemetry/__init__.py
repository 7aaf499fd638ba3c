"""Live telemetry: NVML GPU sampling on its own thread, server /metrics scraping, host
stats, and the 1 Hz trace kept in session files. No drawing here (see tui/widgets)."""
