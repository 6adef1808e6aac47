"""KV-cache methods, one file each; importing this package imports every public module in it, which registers them.

A new method is one new file here (its class decorated with ``@register``); nothing to add to this file.
"""

from tokenzip.registry import import_modules

import_modules(__name__, __path__)
