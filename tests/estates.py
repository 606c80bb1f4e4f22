"""Estates in tests: a second emulator project (`BETA`), credentials blocks saved on the test server, and
targets (vbs_backup/estate.py) built from them."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from vbs_backup.estate import Target, validate_estate
from vbs_backup.tasks.credentials import VbsCredentials

# A second project of the example fleet's region: one server tagged for the nightly plan, two disks.
BETA: dict[str, Any] = {
    "id": "7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d",
    "name": "eu-west-0_beta",
    "access_keys": [{"ak": "BETAAK00000000000001", "sk": "beta-secret-1"}],
    "users": [{"name": "beta-ops", "password": "beta-password", "domain": "beta-domain"}],
    "servers": [
        {
            "id": "1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9",
            "name": "app-01",
            "tags": {"backup": "nightly"},
            "disks": [
                {
                    "id": "2c3d4e5f-6071-4829-93a4-b5c6d7e8f9a0",
                    "name": "app-01-system",
                    "size_gb": 40,
                    "device": "/dev/vda",
                    "boot_index": 0,
                },
                {
                    "id": "3d4e5f60-7182-493a-a4b5-c6d7e8f9a0b1",
                    "name": "app-01-data",
                    "size_gb": 100,
                    "device": "/dev/vdb",
                },
            ],
        }
    ],
}
BETA_DATA = "3d4e5f60-7182-493a-a4b5-c6d7e8f9a0b1"
BETA_VOLUMES = ("2c3d4e5f-6071-4829-93a4-b5c6d7e8f9a0", BETA_DATA)


def add_beta(emulator) -> None:
    """Add project BETA to the emulator."""
    response = emulator.control("POST", "/fleet", json={"region": "eu-west-0", "projects": [BETA]})
    response.raise_for_status()


def save_block(name: str, emulator, project_id: str, ak: str, sk: str) -> None:
    block = VbsCredentials(project_id=project_id, ak=ak, sk=SecretStr(sk), endpoint=emulator.url)
    block.save(name, overwrite=True, _sync=True)  # the synchronous save, inside the tests' event loop


def save_beta_block(name: str, emulator) -> None:
    key = BETA["access_keys"][0]
    save_block(name, emulator, BETA["id"], key["ak"], key["sk"])


def target(name: str, project_id: str, credentials: str, *plans: dict[str, Any], **extra: Any) -> Target:
    """One target of a one-target estate, validated as an estate file's would be."""
    data = {"name": name, "cloud": "huaweicloud", "region": "eu-west-0", "project_id": project_id}
    data |= {"credentials": credentials, "plans": list(plans), **extra}
    return validate_estate({"name": "test", "targets": [data]}).targets[0]
