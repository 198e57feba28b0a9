"""Configuration: one JSON file parsed once into frozen dataclasses, from a declared schema.

Every problem raises ConfigError naming the key path, what is wrong and how to fix it. A legacy
``configurations.json`` (the PowerShell script's file) is accepted unchanged. Nothing here
imports requests or touches the file system beyond reading the configuration (and its
credentials) file, so ``di2siem check --offline`` stays cheap and side-effect free.

The rooms: schema.py (the Field declaration and its checks), jumpcloud.py, siem.py and
toplevel.py (each section's declared keys and dataclass), auth.py, legacy.py, regions.py,
coralogix.py, orgs.py (the rules a declaration cannot say), checks.py (URLs, header values,
secret length), urlsecrets.py, keys.py (unknown keys), files.py, credentials.py, envfile.py,
loading.py (the file to a Config), errors.py (ConfigError).
"""

from __future__ import annotations

from .checks import (
    SECRET_MIN_CHARS,
    check_header_value,
    check_secret_length,
    check_url,
    header_value_problem,
    is_loopback_host,
)
from .coralogix import CORALOGIX_REGIONS, CORALOGIX_UI_HOSTS, coralogix_domain
from .files import decode_json, permission_warning, read_file
from .jumpcloud import JUMPCLOUD_SERVICES, SERVICE_NAME, JumpCloudConfig, unknown_services
from .loading import load, parse, permission_warnings
from .orgs import (
    DEFAULT_ORG,
    JUMPCLOUD_ORG_ID_FORM,
    JUMPCLOUD_ORG_ID_PATTERN,
    ORG_ID_FORM,
    ORG_ID_PATTERN,
    PROVIDER_ID_PATTERN,
    PROVIDER_PREFIX,
    org_key_problem,
)
from .regions import JUMPCLOUD_REGIONS, JUMPCLOUD_TOKEN_URL, JUMPCLOUD_TOKEN_URLS
from .siem import FORMATS, SEVERITY_NAMES, SiemConfig
from .toplevel import LOG_FORMATS, LOG_LEVELS, SCHEMA, Config
from .urlsecrets import URL_PART_MIN_CHARS

__all__ = [
    "CORALOGIX_REGIONS",
    "CORALOGIX_UI_HOSTS",
    "DEFAULT_ORG",
    "FORMATS",
    "JUMPCLOUD_ORG_ID_FORM",
    "JUMPCLOUD_ORG_ID_PATTERN",
    "JUMPCLOUD_REGIONS",
    "JUMPCLOUD_SERVICES",
    "JUMPCLOUD_TOKEN_URL",
    "JUMPCLOUD_TOKEN_URLS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "ORG_ID_FORM",
    "ORG_ID_PATTERN",
    "PROVIDER_ID_PATTERN",
    "PROVIDER_PREFIX",
    "SCHEMA",
    "SECRET_MIN_CHARS",
    "SERVICE_NAME",
    "SEVERITY_NAMES",
    "URL_PART_MIN_CHARS",
    "Config",
    "JumpCloudConfig",
    "SiemConfig",
    "check_header_value",
    "check_secret_length",
    "check_url",
    "coralogix_domain",
    "decode_json",
    "header_value_problem",
    "is_loopback_host",
    "load",
    "org_key_problem",
    "parse",
    "permission_warning",
    "permission_warnings",
    "read_file",
    "unknown_services",
]
