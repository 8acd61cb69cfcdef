"""``kale.types``, Arrikto's Kale's types for step inputs and outputs, is not supported by this
Kale.

Importing it raises ``ModuleNotProvidedError`` (a ``ModuleNotFoundError``) that says what to do
instead; see ``kale.not_provided``.
"""

from kale.not_provided import not_provided

raise not_provided(__name__, module=True)
