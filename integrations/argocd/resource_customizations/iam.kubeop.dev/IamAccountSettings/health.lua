-- Health of an iam.kubeop.dev IamAccountSettings (cluster-scoped) for Argo CD. The operator reports kstatus-style
-- conditions (src/status.rs): Ready (always), Reconciling and Stalled (only while True),
-- and status.observedGeneration. Uses no standard library, so it runs with argocd-cm's
-- default resource.customizations.useOpenLibs=false.
local hs = {}
local meta = obj.metadata or {}
if meta.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Deletion in progress; waiting for finalizers: " .. table.concat(meta.finalizers or {}, ", ")
  return hs
end
local status = obj.status or {}
local generation = meta.generation or 0
if status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end
if status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation .. " (last observed " .. status.observedGeneration .. ")"
  return hs
end
local ready, reconciling, stalled
for _, c in ipairs(status.conditions or {}) do
  if c.type == "Ready" then ready = c end
  if c.type == "Reconciling" and c.status == "True" then reconciling = c end
  if c.type == "Stalled" and c.status == "True" then stalled = c end
end
if stalled ~= nil then
  hs.status = "Degraded"
  hs.message = stalled.message
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
elseif reconciling ~= nil then
  hs.status = "Progressing"
  hs.message = reconciling.message
elseif ready ~= nil then
  hs.status = "Progressing"
  hs.message = ready.message
else
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report the Ready condition"
end
return hs
