"""A stand-in for Arrikto Rok's ``rok_common`` package, shipped with Kale so that scripts written
for Arrikto's Kale that import from it are told what to do instead of "No module named
rok_common". It provides nothing: ``rok_common.cmdutils`` raises ``ModuleNotProvidedError``
(see ``kale.not_provided``).
"""


def __getattr__(name: str) -> object:
    if name == "cmdutils":
        from kale.not_provided import not_provided

        # `from rok_common import cmdutils` asks here first (see kale/__init__.py for why).
        raise not_provided("rok_common.cmdutils", module=True)
    raise AttributeError(f"module 'rok_common' has no attribute {name!r}")
