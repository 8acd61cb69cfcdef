"""``rok_common.cmdutils``, as scripts written for Arrikto's Kale import it: Kale's
``kale.cmdutils`` (``run``, ``yld``, ``ExtCommand``, ``CommandExecutionError``)."""

from kale.cmdutils import (
    CommandExecutionError,
    CommandTimeoutError,
    ExtCommand,
    run,
    yld,
)

__all__ = ["CommandExecutionError", "CommandTimeoutError", "ExtCommand", "run", "yld"]
