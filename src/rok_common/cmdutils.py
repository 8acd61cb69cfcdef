"""``rok_common.cmdutils``, Arrikto Rok's helpers for running commands, is not provided by Kale.

Importing it raises ``ModuleNotProvidedError`` (a ``ModuleNotFoundError``) that says what to use
instead (``subprocess.run``); see ``kale.not_provided``.
"""

from kale.not_provided import not_provided

raise not_provided(__name__, module=True)
