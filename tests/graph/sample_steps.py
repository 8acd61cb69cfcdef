"""Steps for the generated pipelines of test_parser_properties (a real module, so the step checks
can read their source)."""

from kale.sdk import step


@step
def s0():
    return 1


@step
def s1(a):
    return a


@step
def s2(a, b=None):
    return [a, b]


@step
def pair(a):
    return a, a


@step
def nothing(a=None):
    print(a)


def helper(x):
    return x
