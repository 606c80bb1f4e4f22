"""Native VBS backup policies as code (reference §3): a YAML file declares policies (schedule, retention,
status, tags, member disks by id or by server); `make_plan` compares it with the cloud, `apply_plan` makes
the cloud match, `import_policies` writes the file from the cloud.

    file = load_policy_file("policies.yaml")
    inventory = await read_inventory(client)
    members = resolve_members(file, inventory)           # unknown disk/server: PolicyFileError, no change
    plan = make_plan(file, members, await read_cloud(client, inventory), inventory)
    result = await apply_plan(client, plan, inventory)   # a second plan is empty

Parts: `model` (the file and its validation), `cloud` (reading the cloud, resolving members, import),
`diff` (the plan), `apply` (carrying it out).
"""

from .apply import ApplyResult, apply_plan
from .cloud import (
    CloudPolicy,
    Inventory,
    dump_policy_file,
    import_policies,
    read_cloud,
    read_inventory,
    resolve_members,
    spec_from_cloud,
)
from .diff import UNASSOCIABLE, Change, ChangeKind, PolicyPlan, make_plan
from .model import (
    WEEKDAYS,
    Members,
    PolicyFile,
    PolicyFileError,
    PolicySpec,
    Retention,
    Schedule,
    ServerRef,
    load_policy_file,
    tz_minutes,
    validate_policy_file,
)

__all__ = [
    "UNASSOCIABLE",
    "WEEKDAYS",
    "ApplyResult",
    "Change",
    "ChangeKind",
    "CloudPolicy",
    "Inventory",
    "Members",
    "PolicyFile",
    "PolicyFileError",
    "PolicyPlan",
    "PolicySpec",
    "Retention",
    "Schedule",
    "ServerRef",
    "apply_plan",
    "dump_policy_file",
    "import_policies",
    "load_policy_file",
    "make_plan",
    "read_cloud",
    "read_inventory",
    "resolve_members",
    "spec_from_cloud",
    "tz_minutes",
    "validate_policy_file",
]
