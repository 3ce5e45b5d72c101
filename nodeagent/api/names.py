"""Kubernetes' name rules (apimachinery validation), with its own error wording.

Every check returns the list of problems ([] when the name is fine), like IsDNS1123Label in Go.
Nothing here may touch a path before these have passed.
"""

from __future__ import annotations

import re

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = _LABEL + r"(\." + _LABEL + r")*"
_QUALIFIED = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_ENV = r"[-._a-zA-Z][-._a-zA-Z0-9]*"

_LABEL_RE = re.compile(_LABEL)
_SUBDOMAIN_RE = re.compile(_SUBDOMAIN)
_QUALIFIED_RE = re.compile(_QUALIFIED)
_ENV_RE = re.compile(_ENV)
_UID_RE = re.compile(r"[A-Za-z0-9][-A-Za-z0-9]{0,63}")
_IANA_RE = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])*")

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253


def _too_long(limit: int) -> str:
    return f"must be no more than {limit} characters"


def dns1123_label(value: str) -> list[str]:
    problems = []
    if len(value) > DNS1123_LABEL_MAX:
        problems.append(_too_long(DNS1123_LABEL_MAX))
    if not _LABEL_RE.fullmatch(value):
        problems.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
            "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
            f"used for validation is '{_LABEL}')"
        )
    return problems


def dns1123_subdomain(value: str) -> list[str]:
    problems = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        problems.append(_too_long(DNS1123_SUBDOMAIN_MAX))
    if not _SUBDOMAIN_RE.fullmatch(value):
        problems.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
            "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
            f"for validation is '{_SUBDOMAIN}')"
        )
    return problems


def qualified_name(value: str) -> list[str]:
    """A label or annotation key: an optional DNS subdomain prefix and '/', then a name of 63 at most."""
    prefix, _, name = value.rpartition("/")
    problems = []
    if "/" in value and not prefix:
        problems.append("prefix part must be non-empty")
    elif prefix:
        problems += [f"prefix part {p}" for p in dns1123_subdomain(prefix)]
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > 63:
        problems.append("name part " + _too_long(63))
    elif not _QUALIFIED_RE.fullmatch(name):
        problems.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            f"with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
            f"validation is '{_QUALIFIED}')"
        )
    return problems


def label_value(value: str) -> list[str]:
    problems = []
    if len(value) > 63:
        problems.append(_too_long(63))
    if value and not _QUALIFIED_RE.fullmatch(value):
        problems.append(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
            "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  "
            f"or '12345', regex used for validation is '({_QUALIFIED})?')"
        )
    return problems


def env_var_name(value: str) -> list[str]:
    if _ENV_RE.fullmatch(value):
        return []
    return [
        "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or "
        "'.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', "
        f"regex used for validation is '{_ENV}')"
    ]


def port_name(value: str) -> list[str]:
    """IANA_SVC_NAME: at most 15 characters, lower case letters, digits and '-', at least one letter."""
    problems = []
    if len(value) > 15:
        problems.append(_too_long(15))
    if not _IANA_RE.fullmatch(value):
        problems.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        problems.append("must not contain consecutive hyphens")
    if not any(c.isalpha() for c in value):
        problems.append("must contain at least one letter (a-z)")
    return problems


def pod_uid(value: str) -> list[str]:
    """A UID names cgroups and directories here, so it is held to letters, digits and '-'."""
    if _UID_RE.fullmatch(value):
        return []
    return ["must be 1 to 64 letters, digits or '-', starting with a letter or digit"]
