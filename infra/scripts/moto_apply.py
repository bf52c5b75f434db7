"""Plan and apply the main Terraform stack against a local moto server: a real apply, offline.

It starts ``moto_server`` on a free loopback port, creates a VPC with two subnets there, copies
``infra/terraform`` to a temp folder with the S3 backend removed and the AWS provider pointed at moto,
then runs ``terraform init`` (offline provider from --plugin-dir), ``plan`` and ``apply``. It prints
the resource counts and timings, and exits non-zero when any step fails. Needs the ``terraform``
binary and the AWS provider unpacked under --plugin-dir; moto comes with the dev dependencies.

Usage: ``.venv/bin/python infra/scripts/moto_apply.py [--cities sf nyc] [--plugin-dir /opt/tf-plugins]``
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import httpx

STACK = Path(__file__).resolve().parents[1] / "terraform"
# Services the main stack calls; each is pointed at moto.
SERVICES = (
    *("athena", "cloudwatch", "cloudwatchlogs", "ec2", "ecr", "ecs", "efs", "events", "glue", "iam", "kms"),
    *("s3", "sagemaker", "servicediscovery", "sns", "ssm", "sts"),
)
FAKE_KEY = "test"  # moto accepts any credentials; these are not secrets
BOUNDARY = "arn:aws:iam::123456789012:policy/bikeshare-ci/bikeshare-workload-boundary"
# Not supported by moto: the EFS backup policy waits forever for a status moto never reports.
MOTO_VARS = {"mlflow_store_backup": "false"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto(port: int, log: Path) -> subprocess.Popen[bytes]:
    """Start moto_server and wait until it answers."""
    moto = Path(sys.executable).with_name("moto_server")
    command = [str(moto), "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)  # noqa: S603 - our own argv
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"moto_server did not answer on port {port}; see {log}")


def make_network(endpoint: str) -> tuple[str, list[str]]:
    """A VPC with two subnets in two AZs, created in moto."""
    ec2 = boto3.client(
        "ec2",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=FAKE_KEY,
        aws_secret_access_key=FAKE_KEY,
    )
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.42.{i}.0/24", AvailabilityZone=f"us-east-1{az}")["Subnet"][
            "SubnetId"
        ]
        for i, az in ((1, "a"), (2, "b"))
    ]
    return vpc, subnets


def prepare(work: Path, endpoint: str, vpc: str, subnets: list[str], cities: list[str]) -> None:
    """Copy the stack, drop the S3 backend (local state), point the provider at moto."""
    for path in [*STACK.glob("*.tf"), STACK / ".terraform.lock.hcl"]:
        shutil.copy(path, work / path.name)
    versions = (work / "versions.tf").read_text(encoding="utf-8")
    versions, removed = re.subn(r'\n  backend "s3" \{.*?\n  \}\n', "\n", versions, flags=re.DOTALL)
    if removed != 1:
        raise RuntimeError("could not find the backend block in versions.tf")
    (work / "versions.tf").write_text(versions, encoding="utf-8")
    endpoints = "\n".join(f'    {name} = "{endpoint}"' for name in SERVICES)
    (work / "moto_override.tf").write_text(
        'provider "aws" {\n  region = "us-east-1"\n  access_key = "test"\n  secret_key = "test"\n'
        "  skip_credentials_validation = true\n  skip_metadata_api_check = true\n  s3_use_path_style = true\n"
        f"  endpoints {{\n{endpoints}\n  }}\n}}\n",
        encoding="utf-8",
    )
    city_list = ", ".join(f'"{c}"' for c in cities)
    subnet_list = ", ".join(f'"{s}"' for s in subnets)
    tfvars = [
        f'image_tag = "{"0" * 40}"',
        f'vpc_id = "{vpc}"',
        f"private_subnet_ids = [{subnet_list}]",
        f'workload_permissions_boundary_arn = "{BOUNDARY}"',
        f"cities = [{city_list}]",
        *(f"{k} = {v}" for k, v in MOTO_VARS.items()),
    ]
    (work / "terraform.tfvars").write_text("\n".join(tfvars) + "\n", encoding="utf-8")


def terraform(work: Path, *args: str, timeout: float) -> tuple[float, str]:
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}
    started = time.perf_counter()
    command = ["terraform", *args]  # from PATH on purpose: whichever terraform the developer has
    result = subprocess.run(  # noqa: S603 - fixed argv
        command, cwd=work, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"terraform {args[0]} failed after {elapsed:.1f}s:\n{result.stdout[-4000:]}{result.stderr}")
    return elapsed, result.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cities", nargs="+", default=["sf", "nyc"])
    parser.add_argument(
        "--plugin-dir", type=Path, default=Path(os.environ.get("BIKESHARE_TF_PLUGIN_DIR", "/opt/tf-plugins"))
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp folder and print its path")
    args = parser.parse_args(argv)
    if shutil.which("terraform") is None:
        print("no terraform binary on PATH", file=sys.stderr)
        return 2
    if not args.plugin_dir.is_dir():
        print(f"no provider folder {args.plugin_dir} (set --plugin-dir or BIKESHARE_TF_PLUGIN_DIR)", file=sys.stderr)
        return 2

    # A SIGTERM (e.g. from `timeout`) still stops moto and cleans up, through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="bikeshare-moto-apply-"))
    port = free_port()
    moto = start_moto(port, work / "moto.log")
    try:
        endpoint = f"http://127.0.0.1:{port}"
        vpc, subnets = make_network(endpoint)
        prepare(work, endpoint, vpc, subnets, args.cities)
        t_init, _ = terraform(work, "init", "-input=false", "-no-color", f"-plugin-dir={args.plugin_dir}", timeout=300)
        t_plan, plan = terraform(work, "plan", "-input=false", "-no-color", "-out=tfplan", timeout=600)
        planned = re.search(r"Plan: (\d+) to add", plan)
        t_apply, apply = terraform(
            work, "apply", "-input=false", "-no-color", "-parallelism=20", "tfplan", timeout=1800
        )
        added = re.search(r"Apply complete! Resources: (\d+) added", apply)
        # A second plan shows whether the applied stack converged (moto's own quirks can show here too).
        t_replan, replan = terraform(work, "plan", "-input=false", "-no-color", timeout=600)
        drift = re.search(r"Plan: (\d+) to add, (\d+) to change, (\d+) to destroy", replan)
        print(f"cities: {' '.join(args.cities)}")
        print(f"terraform init {t_init:.1f}s, plan {t_plan:.1f}s ({planned.group(1) if planned else '?'} to add)")
        print(f"apply {t_apply:.1f}s ({added.group(1) if added else '?'} added) against moto at {endpoint}")
        if drift:
            print(f"second plan {t_replan:.1f}s: {drift.group(0)}")
            print("\n".join(line for line in replan.splitlines() if line.strip().startswith(("#", "~"))))
        else:
            print(f"second plan {t_replan:.1f}s: no changes")
        return 0
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        moto.terminate()
        moto.wait(timeout=10)
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
