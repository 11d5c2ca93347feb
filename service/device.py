"""A device in words, from a User-Agent: only names Latch chose, never the header's own text.

The User-Agent is written by whoever sends the request. Its words reach other people (the
sign-in mail goes to the address's owner; later, new-device notices), so a crafted one could
put "Urgent: call +1 555 0100" or a link into a mail that Latch signs. Only the fixed names
below are ever shown; anything else reads "an unrecognised device".
"""

from __future__ import annotations

UNRECOGNISED = "an unrecognised device"
# Looked at only this far: real User-Agents are a few hundred characters; the search is cheap
# but need not run over kilobytes of padding.
_SCAN = 512
# First match wins: Edge and Opera also say Chrome/, Chrome also says Safari/.
_BROWSERS = (
    ("Edg/", "Edge"),
    ("EdgA/", "Edge"),
    ("EdgiOS/", "Edge"),
    ("OPR/", "Opera"),
    ("SamsungBrowser/", "Samsung Internet"),
    ("FxiOS/", "Firefox"),
    ("Firefox/", "Firefox"),
    ("CriOS/", "Chrome"),
    ("Chromium/", "Chromium"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
_SYSTEMS = (
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Android", "Android"),
    ("Windows", "Windows"),
    ("CrOS", "ChromeOS"),
    ("Mac OS X", "macOS"),
    ("Macintosh", "macOS"),
    ("Linux", "Linux"),
)


def device_name(user_agent: str) -> str:
    """`Firefox on Linux`, `Safari on iPhone`, `Chrome`; '' when nothing is recognised."""
    head = user_agent[:_SCAN]
    browser = next((name for token, name in _BROWSERS if token in head), "")
    system = next((name for token, name in _SYSTEMS if token in head), "")
    if browser and system:
        return f"{browser} on {system}"
    return browser or system


def describe_device(user_agent: str) -> str:
    """The device for a sentence: a recognised name, else 'an unrecognised device'."""
    return device_name(user_agent) or UNRECOGNISED
