"""Debian's headless Chromium, as every browser test launches it (Playwright cannot fetch one)."""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
"""Installed by scripts/bootstrap from Debian's ``chromium`` package."""

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium keeps trying to reach the internet, which this machine refuses.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
