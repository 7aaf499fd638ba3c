"""Widgets several tabs share: the app bar, the annotation form, the startup panel."""
