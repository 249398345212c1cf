-- Argo CD health check for hitl.dev/Workflow (argocd-cm key
-- resource.customizations.health.hitl.dev_Workflow; see README.md).
-- Succeeded -> Healthy, Failed -> Degraded, Waiting (a person must decide) -> Suspended,
-- suspended by spec.suspend -> Suspended, Pending/Running -> Progressing.
-- Argo CD runs Lua 5.1 (gopher-lua) without the os and io libraries: keep to plain Lua 5.1.
local hs = {}
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for hitl-operator to start the workflow"
  return hs
end

local phase = status.phase
local message = status.message
if message == nil or message == "" then
  message = phase
end
if status.progress ~= nil and status.progress ~= "" then
  message = message .. " (" .. status.progress .. " steps done)"
end

local terminal = phase == "Succeeded" or phase == "Failed"
local generation = obj.metadata and obj.metadata.generation
if not terminal and generation ~= nil and status.observedGeneration ~= nil
    and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for hitl-operator to observe generation " .. tostring(generation)
  return hs
end

if phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "Failed" then
  hs.status = "Degraded"
  if status.reason ~= nil and status.reason ~= "" then
    message = status.reason .. ": " .. message
  end
elseif phase == "Waiting" then
  hs.status = "Suspended"
elseif phase == "Pending" and status.reason == "Suspended" then
  hs.status = "Suspended"
elseif phase == "Pending" or phase == "Running" then
  hs.status = "Progressing"
else
  hs.status = "Unknown"
  message = "Unknown phase " .. tostring(phase) .. ": " .. message
end
hs.message = message
return hs
