#!/usr/bin/env bash
# Run the staging phase's checks and gates against the embedded service and the Zaptra sandbox,
# the way CI does (.github/workflows/staging-gates.yml). Writes reports/staging-gates.xml (JUnit).
# Exit code: rollout gate's (0 passed, 1 failed, 3 held). Everything listens on 127.0.0.1 and is
# stopped on exit.
set -euo pipefail
SANDBOX_PORT=${SANDBOX_PORT:-8900}
SERVICE_PORT=${SERVICE_PORT:-8102}
WORK=${WORK:-.rollout/ci}
REPORTS=${REPORTS:-reports}
ROLLOUT=${ROLLOUT:-rollout}

export ZAPTRA_API_TOKEN=${ZAPTRA_API_TOKEN:-ci-sandbox-token-0001}
export ZAPTRA_SANDBOX_TOKEN=$ZAPTRA_API_TOKEN
export ROLLOUT_ADMIN_TOKEN=${ROLLOUT_ADMIN_TOKEN:-ci-admin-token-0001}
export ZAPTRA_API_URL=http://127.0.0.1:$SANDBOX_PORT/api/wpbox
export ROLLOUT_SANDBOX_URL=http://127.0.0.1:$SANDBOX_PORT
export ROLLOUT_STAGING_URL=http://127.0.0.1:$SERVICE_PORT
export ROLLOUT_STAGING_ENV_FILE=$WORK/staging/service.env
export ROLLOUT_STATE=$WORK/state.db
# the compressed timings the demo uses: scenarios and the load finish in seconds
export WHATSAPP_TIMEOUT_MS=${WHATSAPP_TIMEOUT_MS:-2000}
export WHATSAPP_BREAKER_RESET_MS=${WHATSAPP_BREAKER_RESET_MS:-2000}
export WHATSAPP_RETRY_BASE_MS=${WHATSAPP_RETRY_BASE_MS:-100}
export ROLLOUT_SCENARIO_WITHIN=${ROLLOUT_SCENARIO_WITHIN:-20s}
export ROLLOUT_LOAD_BOOKINGS=${ROLLOUT_LOAD_BOOKINGS:-200}

mkdir -p "$WORK/staging" "$REPORTS"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_for() {
  for _ in $(seq 1 100); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$1" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "ci-staging-gates: $1 did not come up" >&2
  return 1
}

$ROLLOUT sandbox --port "$SANDBOX_PORT" --token "$ZAPTRA_SANDBOX_TOKEN" >"$WORK/sandbox.log" 2>&1 &
pids+=($!)
$ROLLOUT configure --env staging --set WHATSAPP_NOTIFICATIONS_ENABLED=true --set WHATSAPP_ROLLOUT_PERCENT=100
$ROLLOUT serve --port "$SERVICE_PORT" --env-file "$ROLLOUT_STAGING_ENV_FILE" --db "$WORK/staging/service.db" \
  --log-file "$WORK/staging-events.log" >"$WORK/service.log" 2>&1 &
pids+=($!)
wait_for "$ROLLOUT_SANDBOX_URL/"
wait_for "$ROLLOUT_STAGING_URL/api/whatsapp/metrics?window=1"

set +e
$ROLLOUT gate --env staging --junit "$REPORTS/staging-gates.xml"
status=$?
set -e
echo "ci-staging-gates: rollout gate exited $status; JUnit in $REPORTS/staging-gates.xml"
exit $status
