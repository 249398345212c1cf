#!/usr/bin/env bash
# Runs the Argo CD health checks against sample objects. Argo CD runs Lua 5.1 (gopher-lua); any
# Lua 5.1-5.4 interpreter checks the logic: LUA=lua5.1 config/gitops/test.sh
# (Debian: apt-get install lua5.1 or lua5.4). Not part of `make test`; run it after changing a check.
set -euo pipefail
cd "$(dirname "$0")"
LUA=${LUA:-$(command -v lua5.1 || command -v lua5.4 || command -v lua || true)}
[ -n "$LUA" ] || { echo "no Lua interpreter found: apt-get install lua5.1 (or set LUA)" >&2; exit 1; }

# Each case: check file, expected status, expected message substring, the object as a Lua table.
"$LUA" - <<'LUA'
local failures, count = 0, 0
local function check(file, want, want_msg, o)
  count = count + 1
  obj = o
  local hs = dofile(file)
  local ok = hs.status == want and (want_msg == nil or string.find(hs.message or "", want_msg, 1, true) ~= nil)
  if not ok then
    failures = failures + 1
    print(string.format("FAIL %s case %d: got %s %q, want %s %q", file, count, tostring(hs.status),
      tostring(hs.message), want, tostring(want_msg)))
  end
end

local W = "argocd-health.lua"
local meta = {name = "wf", namespace = "ns", generation = 1}
check(W, "Progressing", "Waiting for hitl-operator", {metadata = meta, spec = {}})
check(W, "Progressing", "Waiting for hitl-operator", {metadata = meta, status = {}})
check(W, "Progressing", "running scan (1/4 steps done)", {metadata = meta, status = {
  phase = "Running", message = "running scan", progress = "1/4", observedGeneration = 1}})
check(W, "Progressing", "starting", {metadata = meta, status = {phase = "Pending", message = "starting",
  observedGeneration = 1}})
check(W, "Suspended", "waiting for approval wf-review", {metadata = meta, status = {
  phase = "Waiting", reason = "ApprovalPending", message = "waiting for approval wf-review", observedGeneration = 1}})
check(W, "Suspended", "set spec.suspend to false", {metadata = meta, spec = {suspend = true}, status = {
  phase = "Pending", reason = "Suspended", message = "suspended: set spec.suspend to false to continue",
  observedGeneration = 1}})
check(W, "Healthy", "4/4", {metadata = meta, status = {phase = "Succeeded", message = "all steps done",
  progress = "4/4", observedGeneration = 1}})
check(W, "Degraded", "StepFailed: step scan failed", {metadata = meta, status = {phase = "Failed",
  reason = "StepFailed", message = "step scan failed", observedGeneration = 1}})
check(W, "Degraded", "Failed", {metadata = meta, status = {phase = "Failed"}})
-- A spec change (spec.suspend) the operator has not seen yet.
check(W, "Progressing", "observe generation 2", {metadata = {name = "wf", generation = 2}, status = {
  phase = "Running", message = "running scan", observedGeneration = 1}})
-- A finished run stays finished whatever happens to the spec.
check(W, "Healthy", nil, {metadata = {name = "wf", generation = 2}, status = {phase = "Succeeded",
  observedGeneration = 1}})
check(W, "Unknown", "Sleeping", {metadata = meta, status = {phase = "Sleeping", observedGeneration = 1}})

local A = "argocd-health-approval.lua"
check(A, "Progressing", "open the gate", {metadata = meta, spec = {step = "review"}})
check(A, "Suspended", "Sign the contract? (approvers: alice, group:legal) (expires 2030-01-01T00:00:00Z)",
  {metadata = meta, spec = {message = "Sign the contract?"}, status = {phase = "Pending",
  approvers = "alice, group:legal", expiresAt = "2030-01-01T00:00:00Z"}})
check(A, "Suspended", "Waiting for a decision", {metadata = meta, spec = {}, status = {phase = "Pending"}})
check(A, "Healthy", "Approved by alice", {metadata = meta, spec = {decision = "Approve"}, status = {
  phase = "Approved", decidedBy = "alice"}})
check(A, "Healthy", "Approved", {metadata = meta, spec = {}, status = {phase = "Approved"}})
check(A, "Degraded", "Rejected by bob: clause 7", {metadata = meta, spec = {decision = "Reject",
  comment = "clause 7"}, status = {phase = "Rejected", decidedBy = "bob"}})
check(A, "Degraded", "Expired at 2030-01-01T00:00:00Z without a decision", {metadata = meta, spec = {},
  status = {phase = "Expired", expiresAt = "2030-01-01T00:00:00Z"}})
check(A, "Healthy", "Cancelled: the Workflow ended before anyone decided", {metadata = meta, spec = {},
  status = {phase = "Cancelled"}})
check(A, "Unknown", "Unknown phase Maybe", {metadata = meta, status = {phase = "Maybe"}})

print(string.format("%s: %d cases, %d failed", _VERSION, count, failures))
if failures > 0 then os.exit(1) end
LUA
