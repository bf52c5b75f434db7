#!/usr/bin/env bash
# Run one `bikeshare` job of the deployed image as a Fargate task, wait for it to stop, print the
# tail of its log, and exit with the container's exit code (so a failed gate fails the workflow).
#
# Usage: run-ecs-task.sh JOB CITY [BIKESHARE_ARGS...]
#   JOB   task family suffix: pipeline | promote | ingest | infer | actuals | monitor
#   CITY  sets BIKESHARE_CITY for the run
#   BIKESHARE_ARGS replace the task's default command (e.g. promote --target bikes --to production)
# Environment: ECS_CLUSTER, TASK_SUBNETS (comma-separated), TASK_SECURITY_GROUP (terraform outputs);
#   PROJECT (default bikeshare), TASK_TIMEOUT_S (default 5400), POLL_S (default 15).
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 JOB CITY [BIKESHARE_ARGS...]" >&2
  exit 2
fi
job=$1
city=$2
shift 2
: "${ECS_CLUSTER:?set ECS_CLUSTER (terraform output ecs_cluster)}"
: "${TASK_SUBNETS:?set TASK_SUBNETS (terraform output task_subnets)}"
: "${TASK_SECURITY_GROUP:?set TASK_SECURITY_GROUP (terraform output task_security_group)}"
project=${PROJECT:-bikeshare}
timeout_s=${TASK_TIMEOUT_S:-5400}
poll_s=${POLL_S:-15}
family="${project}-${job}"

# Build the overrides JSON with Python so that any argument is quoted correctly.
overrides=$(python3 - "$city" "$@" <<'PY'
import json, sys
city, args = sys.argv[1], sys.argv[2:]
container = {"name": "app", "environment": [{"name": "BIKESHARE_CITY", "value": city}]}
if args:
    container["command"] = args
print(json.dumps({"containerOverrides": [container]}))
PY
)

echo "starting ${family} for city=${city}: ${*:-(default command)}"
task_arn=$(aws ecs run-task \
  --cluster "$ECS_CLUSTER" \
  --task-definition "$family" \
  --launch-type FARGATE \
  --network-configuration "awsvpcConfiguration={subnets=[${TASK_SUBNETS}],securityGroups=[${TASK_SECURITY_GROUP}],assignPublicIp=DISABLED}" \
  --overrides "$overrides" \
  --started-by "${GITHUB_RUN_ID:-manual}" \
  --query 'tasks[0].taskArn' --output text)
if [[ -z "$task_arn" || "$task_arn" == "None" ]]; then
  echo "ECS did not start ${family} (capacity or permissions): see 'failures' of run-task" >&2
  exit 1
fi
task_id=${task_arn##*/}
echo "task ${task_id}"

deadline=$((SECONDS + timeout_s))
status=""
while [[ "$status" != "STOPPED" ]]; do
  if ((SECONDS > deadline)); then
    echo "task ${task_id} still ${status} after ${timeout_s}s: stopping it" >&2
    aws ecs stop-task --cluster "$ECS_CLUSTER" --task "$task_arn" --reason "timeout in CI" >/dev/null
    exit 124
  fi
  sleep "$poll_s"
  status=$(aws ecs describe-tasks --cluster "$ECS_CLUSTER" --tasks "$task_arn" \
    --query 'tasks[0].lastStatus' --output text)
  echo "  ${status}"
done

exit_code=$(aws ecs describe-tasks --cluster "$ECS_CLUSTER" --tasks "$task_arn" \
  --query "tasks[0].containers[?name=='app'].exitCode | [0]" --output text)
reason=$(aws ecs describe-tasks --cluster "$ECS_CLUSTER" --tasks "$task_arn" \
  --query 'tasks[0].stoppedReason' --output text)

echo "--- last log lines of /${project}/jobs/${job} (app/app/${task_id}) ---"
aws logs get-log-events --log-group-name "/${project}/jobs/${job}" --log-stream-name "app/app/${task_id}" \
  --limit 200 --query 'events[].message' --output text || echo "(no log stream)"
echo "--- ${family} stopped: ${reason}; exit code ${exit_code} ---"

if [[ ! "$exit_code" =~ ^[0-9]+$ ]]; then
  exit 1 # the container never ran (image pull, resources): no exit code
fi
exit "$exit_code"
