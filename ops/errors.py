"""The errors ops raises. The CLI turns each into one clear line and a non-zero exit."""


class OpsError(Exception):
    """A problem the user can act on; the message names it."""


class ConfigError(OpsError):
    """A configuration file or vps.env is missing, malformed or unsafe."""


class ServiceError(OpsError):
    """A service (local process, container, HTTP endpoint) did not start or answer."""
