"""Reports from a session file: one module per format, all built on the same analysis.

``outcomes`` decides pass/fail per exchange per lane (the one definition every report
states), ``stats`` holds the statistics (Wilson, exact McNemar, paired bootstrap, minimum
detectable difference).
"""
