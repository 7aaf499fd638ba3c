"""The chat tab: one LanePane per server, the prompt box and the sampling parameters."""
