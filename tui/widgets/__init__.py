"""quantlab's widgets, one per module, grouped by the feature they serve.

``chat/`` the chat tab (lanes, prompt, parameters), ``runner/`` the suite runner tab and its
compare view, ``telemetry/`` the GPU/server telemetry pane, ``common/`` what several tabs
share (app bar, annotation form, startup panel).
"""
