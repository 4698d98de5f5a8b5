"""Transitional alias: the template loader moved to ``comms_bridge_tools.local_stack``."""

import sys

from comms_bridge_tools import local_stack

sys.modules[__name__] = local_stack
