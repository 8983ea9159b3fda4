"""Presentation: the streamlit dashboard, read-only over the artifact store (``app.py``).

``data`` loads (checked names, pruned reads, down-sampling) and ``charts`` draws (plotly);
neither imports streamlit, so both are testable without a browser.
"""

from __future__ import annotations

__all__: list[str] = []
