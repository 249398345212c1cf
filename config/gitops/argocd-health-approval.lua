-- Argo CD health check for hitl.dev/Approval (argocd-cm key
-- resource.customizations.health.hitl.dev_Approval; see README.md).
-- Pending (a person must decide) -> Suspended, Approved -> Healthy, Rejected/Expired -> Degraded,
-- Cancelled (the Workflow ended first) -> Healthy: nothing is left to do.
-- Argo CD runs Lua 5.1 (gopher-lua) without the os and io libraries: keep to plain Lua 5.1.
local hs = {}
local status = obj.status
local spec = obj.spec or {}
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for hitl-operator to open the gate"
  return hs
end

local phase = status.phase
local by = status.decidedBy or spec.decidedBy
if phase == "Pending" then
  hs.status = "Suspended"
  local message = status.message or spec.message or "Waiting for a decision"
  if status.approvers ~= nil and status.approvers ~= "" then
    message = message .. " (approvers: " .. status.approvers .. ")"
  end
  if status.expiresAt ~= nil then
    message = message .. " (expires " .. status.expiresAt .. ")"
  end
  hs.message = message
elseif phase == "Approved" then
  hs.status = "Healthy"
  hs.message = "Approved" .. (by and (" by " .. by) or "")
elseif phase == "Rejected" then
  hs.status = "Degraded"
  hs.message = "Rejected" .. (by and (" by " .. by) or "")
  if spec.comment ~= nil and spec.comment ~= "" then
    hs.message = hs.message .. ": " .. spec.comment
  end
elseif phase == "Expired" then
  hs.status = "Degraded"
  hs.message = "Expired" .. (status.expiresAt and (" at " .. status.expiresAt) or "") .. " without a decision"
elseif phase == "Cancelled" then
  hs.status = "Healthy"
  hs.message = "Cancelled: the Workflow ended before anyone decided"
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
