"""The suite runner tab: suite/lane selection, the results table and the compare view."""
