"""The Textual app of quantlab: screens and widgets only; every computation is in quantlab/."""
