-- Health of an iam.kubeop.dev IamTenancyPolicy for Argo CD. The operator only reads
-- tenancy policies (when it reconciles the objects of the namespaces they select) and
-- writes no status on them: no conditions, no observedGeneration. There is nothing to wait
-- for once the API server has accepted one, except a deletion held by a finalizer.
local hs = {}
local meta = obj.metadata or {}
if meta.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Deletion in progress; waiting for finalizers: " .. table.concat(meta.finalizers or {}, ", ")
  return hs
end
hs.status = "Healthy"
hs.message = "Applied: the operator reads it for the namespaces it selects and reports no status on it"
return hs
