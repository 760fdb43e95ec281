"""Exceptions raised by the library; only the CLI turns them into exit codes."""


class DstuneError(Exception):
    """Base class of every error dstune raises on purpose."""


class UserInputError(DstuneError):
    """The user asked for something that cannot be done (bad name, value, rule).

    The CLI prints the message as one line and exits with code 2.
    """


class UnknownModelError(UserInputError):
    """A model name, alias or path that the catalog cannot resolve."""


class PlanRuleError(UserInputError):
    """A plan breaks one of DeepSpeed-Chat's hard rules: it is infeasible, not merely slow."""
