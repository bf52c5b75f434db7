"""GitHub Actions workflows: the GitHub schema, our policies, actionlint where installed, what each
pipeline must do, and the contracts between the workflows, Terraform and the CLI."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tfpolicy
import typer
import wfpolicy

from bikeshare.cli import app

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
ACTIONS = REPO / ".github" / "actions"
RUN_TASK = REPO / "infra" / "scripts" / "run-ecs-task.sh"
WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yml"))


def _load(name: str) -> dict[str, Any]:
    return wfpolicy.load_workflow(WORKFLOWS / name)


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in job.get("steps") or [])


def _uses(job: dict[str, Any]) -> list[str]:
    return [str(step["uses"]).split("@")[0] for step in job.get("steps") or [] if "uses" in step]


def test_the_three_workflows_exist() -> None:
    assert {p.name for p in WORKFLOW_FILES} == {"ci.yml", "cd_staging.yml", "promote_prod.yml"}


# --- schema, policies, actionlint ---------------------------------------------------------------


def test_workflows_and_actions_match_the_github_schemas() -> None:
    assert wfpolicy.schema_errors(WORKFLOW_FILES) == []
    action_files = sorted(ACTIONS.rglob("action.yml"))
    assert action_files
    assert wfpolicy.schema_errors(action_files, builtin="vendor.github-actions") == []


BAD_WORKFLOW = """
on: push
jobs:
  build:
    runs_on: ubuntu-24.04
    steps:
      - run: echo hi
"""


def test_schema_check_rejects_a_malformed_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(BAD_WORKFLOW, encoding="utf-8")
    errors = wfpolicy.schema_errors([bad])
    assert errors and "runs-on" in " ".join(errors)


def test_workflows_pass_our_policies() -> None:
    findings = [f for path in WORKFLOW_FILES for f in wfpolicy.policy_findings(path)]
    assert not findings, "\n".join(map(str, findings))


POLICY_VIOLATIONS = """
on: [push]
jobs:
  deploy:
    runs-on: ubuntu-24.04
    needs: [tests]
    steps:
      - uses: actions/checkout@main
      - uses: aws-actions/configure-aws-credentials@v4.2.1
        with:
          aws-access-key-id: ${{ secrets.KEY }}
          aws-region: us-east-1
      - run: echo "${{ github.event.head_commit.message }}"
        env:
          AWS_SECRET_ACCESS_KEY: ${{ secrets.SECRET }}
"""


def test_policy_checker_flags_each_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(POLICY_VIOLATIONS, encoding="utf-8")
    rules = {f.rule for f in wfpolicy.policy_findings(bad)}
    assert rules == {"WF001", "WF002", "WF003", "WF004", "WF005", "WF006", "WF007"}


def test_composite_actions_pin_their_actions() -> None:
    for path in ACTIONS.rglob("action.yml"):
        steps = wfpolicy.load_workflow(path)["runs"]["steps"]
        for step in steps:
            if "uses" in step:
                assert wfpolicy._pin_finding(path.name, "step", step["uses"]) is None, step["uses"]


def test_actionlint_finds_nothing() -> None:
    reason = wfpolicy.actionlint_available()
    if reason:
        pytest.skip(reason)
    findings = wfpolicy.actionlint_findings(WORKFLOW_FILES)
    assert not findings, "\n".join(map(str, findings))


def test_actionlint_flags_a_broken_workflow(tmp_path: Path) -> None:
    reason = wfpolicy.actionlint_available()
    if reason:
        pytest.skip(reason)
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: nope\n    steps:\n"
        "      - run: echo ${{ steps.missing.outputs.x }}\n",
        encoding="utf-8",
    )
    kinds = {f.rule for f in wfpolicy.actionlint_findings([bad])}
    assert "job-needs" in kinds and "expression" in kinds


# --- what each pipeline does --------------------------------------------------------------------


def test_ci_runs_lint_tests_with_the_coverage_floor_audit_and_bandit() -> None:
    ci = _load("ci.yml")
    assert {"pull_request", "push", "workflow_call"} <= set(ci["on"])
    runs = {job_id: _runs(job) for job_id, job in ci["jobs"].items()}
    assert "make lint" in runs["lint"]
    assert re.search(r"^make test$", runs["test"], re.MULTILINE)
    assert re.search(r"pip-audit --requirement requirements\.lock\b.*--disable-pip", runs["audit"])
    assert re.search(r"bandit --recursive src\b", runs["security"])
    # `make test` owns the 70% floor; CI relies on it rather than restating it.
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert "--cov-fail-under=70" in pyproject
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^test: .*\n(\t.*\n)*\t\$\(BIN\)/python -m pytest", makefile, re.MULTILINE)
    # Pinned, hash-checked dependencies are what is audited.
    lock = (REPO / "requirements.lock").read_text(encoding="utf-8")
    assert "--hash=sha256:" in lock


def _needs(job: dict[str, Any]) -> set[str]:
    needs = job.get("needs") or []
    return {needs} if isinstance(needs, str) else set(needs)


def test_cd_staging_gates_then_builds_applies_trains_and_deploys() -> None:
    cd = _load("cd_staging.yml")
    assert cd["on"]["push"]["branches"] == ["main"]
    jobs = cd["jobs"]
    assert jobs["ci"]["uses"] == "./.github/workflows/ci.yml"
    assert _needs(jobs["image"]) == {"ci"}
    assert _needs(jobs["terraform"]) == {"image"}
    assert _needs(jobs["train"]) == {"terraform"}
    assert "train" in _needs(jobs["deploy-staging"])
    assert "aws-actions/amazon-ecr-login" in _uses(jobs["image"])
    assert re.search(r"docker build .*\n.*\n.*\n.*docker push", _runs(jobs["image"]), re.DOTALL)
    tf = _runs(jobs["terraform"])
    assert tf.index("terraform plan") < tf.index("terraform apply") and "apply -input=false" in tf
    assert re.search(r"terraform apply .*tfplan$", tf, re.MULTILINE)  # applies exactly the saved plan
    assert "run-ecs-task.sh pipeline" in _runs(jobs["train"])
    assert "endpoint-in-service" in _runs(jobs["deploy-staging"])
    for job_id, job in jobs.items():
        if job_id != "ci":
            assert job["environment"] == "staging", job_id


def test_promote_prod_is_manual_reviewed_and_can_roll_back() -> None:
    promote = _load("promote_prod.yml")
    assert set(promote["on"]) == {"workflow_dispatch"}
    inputs = promote["on"]["workflow_dispatch"]["inputs"]
    assert inputs["note"]["required"] is True
    assert inputs["action"]["options"] == ["promote", "rollback"]
    jobs = promote["jobs"]
    assert {job["environment"] for job in jobs.values()} == {"production"}
    assert "--to production" in _runs(jobs["promote"]) and "promote --target" in _runs(jobs["promote"])
    assert _needs(jobs["endpoint"]) == {"promote"} and "terraform apply" in _runs(jobs["endpoint"])
    assert "rollback --target" in _runs(jobs["rollback"])
    assert "rollback" in jobs["rollback"]["if"] and "promote" in jobs["promote"]["if"]


# --- contracts with Terraform and the CLI -------------------------------------------------------


def test_aws_jobs_use_environments_the_oidc_roles_trust(bootstrap_modules: list[tfpolicy.Module]) -> None:
    modules = bootstrap_modules
    trusted = None
    for module in modules:
        for entry in module.body.get("locals", []):
            trusted = entry.get("ci_environments", trusted)
    assert trusted == '${toset(["staging", "production"])}'
    assume = next(
        b for b in tfpolicy.blocks(modules, "data") if b.type == "aws_iam_policy_document" and b.name == "github_assume"
    )
    conditions = {c["variable"]: c["values"] for c in assume.body["statement"][0]["condition"]}
    assert conditions["token.actions.githubusercontent.com:sub"] == [
        "repo:${var.github_repository}:environment:${each.key}"
    ]
    assert conditions["token.actions.githubusercontent.com:aud"] == ["sts.amazonaws.com"]
    for path in WORKFLOW_FILES:
        for job_id, job in wfpolicy.load_workflow(path)["jobs"].items():
            if wfpolicy.AWS_CREDENTIALS_ACTION in _uses(job):
                assert job.get("environment") in ("staging", "production"), f"{path.name}: {job_id}"


def _task_invocations() -> list[list[str]]:
    """Every `run-ecs-task.sh JOB CITY ARGS...` of the workflows, as words (variables unexpanded)."""
    calls = []
    for path in WORKFLOW_FILES:
        for line in path.read_text(encoding="utf-8").replace("\\\n", " ").splitlines():
            if "run-ecs-task.sh" in line:
                words = shlex.split(line.split("run-ecs-task.sh", 1)[1].replace('"${args[@]}"', "ARGS"))
                calls.append(words)
    return calls


def _jobs_local(modules: list[tfpolicy.Module]) -> dict[str, Any]:
    return next(e["jobs"] for m in modules for e in m.body.get("locals", []) if "jobs" in e)


def test_ecs_jobs_started_by_workflows_exist_in_terraform(tf_modules: list[tfpolicy.Module]) -> None:
    jobs_local = _jobs_local(tf_modules)
    calls = _task_invocations()
    assert {c[0] for c in calls} == {"pipeline", "promote"}
    assert {c[0] for c in calls} <= set(jobs_local)


def _cli_commands() -> dict[str, Any]:
    """The CLI's commands and sub-commands by name (typer vendors its own click: duck-typed here)."""
    root = typer.main.get_command(app)
    commands: dict[str, Any] = {}
    for name, command in root.commands.items():
        commands[name] = command
        for sub, subcommand in getattr(command, "commands", {}).items():
            commands[f"{name} {sub}"] = subcommand
    return commands


def _check_invocation(commands: dict[str, Any], words: list[str]) -> None:
    if words == ["--help"]:
        return
    command = commands.get(words[0])
    assert command is not None, f"`bikeshare {words[0]}` is used by the deployment but the CLI has no such command"
    options = {opt for param in command.params for opt in param.opts}
    for word in words[1:]:
        if word.startswith("--"):
            assert word in options, f"`bikeshare {words[0]}` has no option {word} (the deployment passes it)"


def test_commands_the_deployment_runs_exist_in_the_cli(tf_modules: list[tfpolicy.Module]) -> None:
    """Terraform's job commands and the workflows' task commands must parse with today's CLI."""
    commands = _cli_commands()
    jobs_local = _jobs_local(tf_modules)
    invocations = [job["command"] for job in jobs_local.values()]
    invocations += [call[2:] for call in _task_invocations() if len(call) > 2 and call[2] != "ARGS"]
    promote_text = (WORKFLOWS / "promote_prod.yml").read_text(encoding="utf-8")
    for match in re.finditer(r"args=\((promote [^)]*)\)|args\+=\((--\w+)", promote_text):
        invocations.append(shlex.split(match.group(1)) if match.group(1) else ["promote", match.group(2)])
    invocations.append(["serve"])  # the SageMaker image runs `serve`
    assert len(invocations) >= 8
    for words in invocations:
        _check_invocation(commands, words)
    # A scheduled task must end: a command that loops unless told `--once` gets `--once`.
    for job, spec in jobs_local.items():
        command = commands.get(spec["command"][0])
        if command is not None and "--once" in {o for p in command.params for o in p.opts}:
            assert "--once" in spec["command"], f"the {job} task would never stop: add --once"


# --- infra/scripts/run-ecs-task.sh against a stand-in `aws` ------------------------------------

STUB_AWS = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
query = args[args.index("--query") + 1] if "--query" in args else ""
if args[:2] == ["ecs", "run-task"]:
    print(os.environ.get("STUB_TASK_ARN", "arn:aws:ecs:us-east-1:123456789012:task/bikeshare/0123abcd"))
elif args[:2] == ["ecs", "describe-tasks"]:
    if "lastStatus" in query:
        print("STOPPED")
    elif "exitCode" in query:
        print(os.environ.get("STUB_EXIT", "0"))
    else:
        print("Essential container in task exited")
elif args[:2] == ["logs", "get-log-events"]:
    print("gate verdict: refused")
"""


def _run_task(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    aws = bin_dir / "aws"
    aws.write_text(STUB_AWS.format(python=sys.executable), encoding="utf-8")
    aws.chmod(aws.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.jsonl"
    full_env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "STUB_LOG": str(log),
        "ECS_CLUSTER": "bikeshare",
        "TASK_SUBNETS": "subnet-a,subnet-b",
        "TASK_SECURITY_GROUP": "sg-1",
        "POLL_S": "0",
        **env,
    }
    result = subprocess.run(
        ["bash", str(RUN_TASK), *args], env=full_env, capture_output=True, text=True, check=False, timeout=60
    )
    calls = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()] if log.exists() else []
    return result, calls


def test_run_task_passes_the_command_and_city_and_returns_the_exit_code(tmp_path: Path) -> None:
    result, calls = _run_task(tmp_path, "promote", "paris", "promote", "--note", 'it\'s "fine"', STUB_EXIT="3")
    assert result.returncode == 3, result.stderr
    run_task = next(c for c in calls if c[:2] == ["ecs", "run-task"])
    assert run_task[run_task.index("--task-definition") + 1] == "bikeshare-promote"
    overrides = json.loads(run_task[run_task.index("--overrides") + 1])
    container = overrides["containerOverrides"][0]
    assert container["command"] == ["promote", "--note", 'it\'s "fine"']
    assert container["environment"] == [{"name": "BIKESHARE_CITY", "value": "paris"}]
    assert "subnets=[subnet-a,subnet-b]" in run_task[run_task.index("--network-configuration") + 1]
    assert "gate verdict: refused" in result.stdout


def test_run_task_succeeds_with_the_default_command(tmp_path: Path) -> None:
    result, calls = _run_task(tmp_path, "pipeline", "sf")
    assert result.returncode == 0, result.stderr
    run_task = next(c for c in calls if c[:2] == ["ecs", "run-task"])
    overrides = json.loads(run_task[run_task.index("--overrides") + 1])
    assert "command" not in overrides["containerOverrides"][0]


def test_run_task_fails_when_the_task_never_started(tmp_path: Path) -> None:
    result, _ = _run_task(tmp_path, "pipeline", "sf", STUB_TASK_ARN="None")
    assert result.returncode == 1 and "did not start" in result.stderr
    result, _ = _run_task(tmp_path, "pipeline", "sf", STUB_EXIT="None")
    assert result.returncode == 1  # stopped without an exit code: the container never ran


def test_run_task_refuses_missing_settings(tmp_path: Path) -> None:
    result, calls = _run_task(tmp_path, "pipeline", "sf", ECS_CLUSTER="")
    assert result.returncode != 0 and "ECS_CLUSTER" in result.stderr and calls == []
    result, _ = _run_task(tmp_path, "pipeline")
    assert result.returncode == 2 and "usage" in result.stderr
