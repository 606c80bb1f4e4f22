"""The VBS facade: `VbsApi`, every VBS operation of the client as one object (`client.vbs`).

The operations live in three small modules by resource and are composed here: backups, jobs and quotas
(`vbs_backups`), sharing (`vbs_shares`), policies and their tags (`vbs_policies`). Method names are the API
operation names, the same as the emulator backend's.
"""

from __future__ import annotations

from .vbs_backups import VbsBackupsApi, VbsBase
from .vbs_policies import VbsPoliciesApi, tag_key_segment
from .vbs_shares import VbsSharesApi

__all__ = ["VbsApi", "VbsBackupsApi", "VbsBase", "VbsPoliciesApi", "VbsSharesApi", "tag_key_segment"]


class VbsApi(VbsBackupsApi, VbsSharesApi, VbsPoliciesApi):
    """`VbsApi(session)`: all VBS operations (§2, §3) over one `CloudSession`."""
