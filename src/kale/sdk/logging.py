"""``kale.sdk.logging``, Arrikto's Kale's metrics logging (``log_metric``...), is not provided
yet by this Kale.

Importing it raises ``ModuleNotProvidedError`` (a ``ModuleNotFoundError``) that says what to do
instead; see ``kale.not_provided``.
"""

from kale.not_provided import not_provided

raise not_provided(__name__, module=True)
