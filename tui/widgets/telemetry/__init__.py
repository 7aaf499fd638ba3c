"""The telemetry tab: GPU, process and server metrics drawn from quantlab.telemetry."""
