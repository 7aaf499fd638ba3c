"""quantlab: compare a quantized LLM server against its BF16 original, live and headless.

The core library: everything that is not drawing. It never imports textual.
"""

__version__ = "0.1.0"
