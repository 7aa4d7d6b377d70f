{{- define "iam-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "iam-operator.serviceAccountName" -}}
{{- default (include "iam-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* What selects the operator's Pods (Deployment, Service, PodDisruptionBudget). */}}
{{- define "iam-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "iam-operator.labels" -}}
{{ include "iam-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* The leader Lease's name: one per release, so two releases never share a leader. */}}
{{- define "iam-operator.leaseName" -}}
{{- include "iam-operator.fullname" . -}}
{{- end -}}

{{/*
The permissions the operator needs in the namespaces it watches, as rules (shared by the
ClusterRole and the per-namespace Roles). Each verb is one the code uses; none more.
*/}}
{{- define "iam-operator.rules" -}}
# get: every reconcile re-reads its object and the IamPolicy/IamGroup it references;
# list, watch: the controllers' watches, the startup check that the CRDs are installed, and
# the lists of a namespace's users (quotas) and groups (who claims an IAM group);
# patch: adding and removing the finalizer (a JSON patch).
- apiGroups: ["iam.kubeop.dev"]
  resources: ["iampolicies", "iamgroups", "iamusers", "iamroles"]
  verbs: ["get", "list", "watch", "patch"]
# patch: status is written with server-side apply, fenced by resourceVersion.
- apiGroups: ["iam.kubeop.dev"]
  resources: ["iampolicies/status", "iamgroups/status", "iamusers/status", "iamroles/status"]
  verbs: ["patch"]
# get: a credential Secret's content and owner, and a chosen first console password
# (spec.console.initialPasswordSecretRef); list, watch: the metadata watch of Secrets (a
# lost or edited credential Secret, or a chosen password's Secret appearing, wakes its
# user); create: a server-side apply
# that creates a Secret needs it, and so does the dry-run create that asks whether the
# namespace is terminating; patch: server-side apply of a Secret, and removing the owner
# when a Retain user is deleted; delete: a replaced credential's or a deleted user's Secret.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# IamRoles with trust.annotateServiceAccounts: get: the ServiceAccount's resourceVersion
# before applying (an apply never creates one that is missing); list, watch: the metadata
# watch that wakes a role when its ServiceAccount appears; patch: server-side apply of the
# eks.amazonaws.com/role-arn annotation alone, under its own field manager. No create,
# update or delete: the operator never makes or removes a ServiceAccount.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "list", "watch", "patch"]
# create, patch: kube-runtime's event recorder creates an Event, then patches its series.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}
