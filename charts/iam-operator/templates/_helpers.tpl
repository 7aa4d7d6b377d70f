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

{{- define "iam-operator.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The permissions the operator needs, as rules (shared by Role and ClusterRole). */}}
{{- define "iam-operator.rules" -}}
- apiGroups: ["iam.kubeop.dev"]
  resources: ["iampolicies", "iamgroups", "iamusers"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["iam.kubeop.dev"]
  resources: ["iampolicies/status", "iamgroups/status", "iamusers/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}
