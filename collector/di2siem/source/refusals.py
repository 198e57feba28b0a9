"""What JumpCloud's refusals mean: an answer other than 200 to an events query as the error
that names what to check (the key, the org, the URL), and which orgs a query reads."""

from __future__ import annotations

from typing import Union

from ..config import DEFAULT_ORG, PROVIDER_PREFIX
from ..errors import FatalError, OrgRefused, Side
from ..transport.body import body_excerpt
from ..transport.retry import transient_status_error

SA_KEYS = "jumpcloud.client_id / jumpcloud.client_secret"
# what one query reads: an org key (Config.org_keys) or several orgs' ids (a shared query)
Scope = Union[str, tuple]


def _insights_disabled(org: str) -> FatalError:
    """402: a plan/licence problem of that org, not a transient error nor a wrong URL."""
    if org == DEFAULT_ORG:
        return OrgRefused(
            "Directory Insights is not enabled for this organization (JumpCloud 402): enable "
            "Directory Insights on the organization's plan"
        )
    if org.startswith(PROVIDER_PREFIX):
        return OrgRefused(
            f"provider {org[len(PROVIDER_PREFIX) :]}: Directory Insights is not enabled for the "
            "MSP portal (JumpCloud 402): enable it or remove jumpcloud.provider_id"
        )
    return OrgRefused(
        f"org {org}: Directory Insights is not enabled for this organization (JumpCloud 402): "
        "enable Directory Insights on its plan or remove it from jumpcloud.org_ids"
    )


def scope_name(org: Scope) -> str:
    """An org key as is; a shared query's orgs as ``first+N`` (log lines stay short)."""
    if isinstance(org, tuple):
        return f"{org[0]}+{len(org) - 1}" if len(org) > 1 else org[0]
    return org


def status_error(
    status: int, response, service_account: bool = False, org: Scope = DEFAULT_ORG
) -> Exception:
    if status == 402:
        if isinstance(org, tuple):  # which org of the group is not said: each one alone will
            return OrgRefused(
                f"orgs {scope_name(org)}: Directory Insights is not enabled for one of them "
                "(JumpCloud 402 to a shared query); they are served alone next"
            )
        return _insights_disabled(org)
    detail = body_excerpt(response)
    suffix = f" ({detail})" if detail else ""
    if status == 401:
        keys = SA_KEYS if service_account else "jumpcloud.api_key"
        return FatalError(f"JumpCloud answered 401: check {keys}{suffix}", side=Side.JUMPCLOUD)
    if status == 403:
        if service_account:
            return OrgRefused(
                f"JumpCloud answered 403: check {SA_KEYS} (the service account must be "
                f"allowed to read Directory Insights) and jumpcloud.org_ids{suffix}"
            )
        return OrgRefused(
            "JumpCloud answered 403: check jumpcloud.api_key (it must be an administrator "
            f"API key allowed to read Directory Insights) and jumpcloud.org_ids{suffix}"
        )
    if status == 400:
        return FatalError(
            "JumpCloud answered 400: check jumpcloud.services, jumpcloud.org_ids and "
            f"jumpcloud.initial_days_back{suffix}",
            side=Side.JUMPCLOUD,
        )
    if status == 404:
        return FatalError(
            f"JumpCloud answered 404: check jumpcloud.base_url / jumpcloud.region{suffix}",
            side=Side.JUMPCLOUD,
        )
    transient = transient_status_error(
        status, response, f"JumpCloud answered {status}", Side.JUMPCLOUD
    )
    if transient is not None:
        return transient
    return FatalError(
        f"JumpCloud answered {status}: check jumpcloud.base_url{suffix}", side=Side.JUMPCLOUD
    )
