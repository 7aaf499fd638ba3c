"""quantlab's widgets, one per module (LanePane, StreamView, LaneHeader, MetricsLine…)."""
