"""SecurityConfigError: a security setting the server cannot start with (one line for the operator)."""


class SecurityConfigError(Exception):
    pass
