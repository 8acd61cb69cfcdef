"""A stand-in for Arrikto Rok's ``rok_common`` package, shipped with Kale so that scripts written
for Arrikto's Kale that import from it run: ``rok_common.cmdutils`` is ``kale.cmdutils``.
"""
