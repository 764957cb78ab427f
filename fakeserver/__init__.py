"""A faithful fake of Segmind's character-video workflow API, on a clock tests can drive.

It stands in for the paid upstream and nothing else: it imports neither `client` nor
`proxy`, so a misreading of the contract cannot hide on both sides. What each workflow takes
and gives it reads from the workflow registry (`workflows`), a package of declarations the
client reads too; how each kind of input is checked is its own.
"""

from .app import create_app
from .catalog import CHARACTER_VIDEO, CHARACTER_VIDEO_ID
from .clock import Clock, SystemClock, VirtualClock
from .errors import ApiError, FakeServerError, InvalidInput, SimulatedNetworkFault
from .settings import DEMO_KEY, FakeSettings

__all__ = [
    "CHARACTER_VIDEO",
    "CHARACTER_VIDEO_ID",
    "DEMO_KEY",
    "ApiError",
    "Clock",
    "FakeServerError",
    "FakeSettings",
    "InvalidInput",
    "SimulatedNetworkFault",
    "SystemClock",
    "VirtualClock",
    "create_app",
]
