"""Former home of the test helpers, kept so that ``from tests.hardening import ...`` keeps working.

The secret-hygiene plugin and its checks live in :mod:`tests.hygiene_plugin`,
the local servers and the other-user helpers in :mod:`tests.servers`. This
module is not a plugin: it only re-exports.
"""

from tests.hygiene_plugin import Emissions, Secrets, assert_no_leaks, captured, find_leaks
from tests.servers import OTHER_UID, RawResponder, RefusingSTS, as_other_user, closed_port, http_answer, require

__all__ = [
    "OTHER_UID", "Emissions", "RawResponder", "RefusingSTS", "Secrets", "as_other_user", "assert_no_leaks", "captured",
    "closed_port", "find_leaks", "http_answer", "require",
]
