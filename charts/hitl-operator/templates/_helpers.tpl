{{/* The chart name, or nameOverride. */}}
{{- define "hitl-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of the release's objects: the release name when it already names the chart. */}}
{{- define "hitl-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "hitl-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hitl-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "hitl-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "hitl-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "hitl-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hitl-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of a ClusterRole for people: (list $ "viewer") -> hitl-viewer. */}}
{{- define "hitl-operator.userRoleName" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" $root.Values.rbac.userRoles.namePrefix (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Every YAML document of a file shipped under files/ (a copy that hack/chart-sync keeps equal to
its source), unchanged except for `helm.sh/resource-policy: keep` added to its metadata.
The files are read with .Files.Get, never rendered as templates: the CRDs' descriptions contain
double-brace placeholders that Helm would try to expand. Arguments: (list $ "files/crds/hitl.dev.yaml" (list "Kind" ...)), the last
being kinds to leave out.
*/}}
{{- define "hitl-operator.keptDocuments" -}}
{{- $root := index . 0 }}
{{- $path := index . 1 }}
{{- $skip := index . 2 }}
{{- /* The policies trust the ServiceAccounts of the operator's namespace, hitl-system in config/; this release's instead. */}}
{{- $operatorNamespace := $root.Values.admissionPolicies.operatorNamespace | default $root.Release.Namespace }}
{{- $file := replace "'system:serviceaccount:hitl-system:'" (printf "'system:serviceaccount:%s:'" $operatorNamespace) ($root.Files.Get $path) }}
{{- range $doc := regexSplit "(?m)^---[ \\t]*$" $file -1 }}
{{- $obj := fromYaml $doc }}
{{- if hasKey $obj "Error" }}
{{- fail (printf "%s: not YAML: %s" $path $obj.Error) }}
{{- end }}
{{- if and $obj.kind (not (has $obj.kind $skip)) }}
{{- if $obj.metadata.annotations }}
{{- fail (printf "%s: %s %s has annotations of its own; teach hitl-operator.keptDocuments to merge them" $path $obj.kind $obj.metadata.name) }}
{{- end }}
{{- $kept := regexReplaceAll "(?m)^metadata:[ \\t]*$" (trim $doc) "metadata:\n  annotations:\n    helm.sh/resource-policy: keep" }}
{{- if eq $kept (trim $doc) }}
{{- fail (printf "%s: %s %s: no block-style top-level `metadata:` line to annotate" $path $obj.kind $obj.metadata.name) }}
{{- end }}
---
{{ $kept }}
{{- end }}
{{- end }}
{{- end }}

{{/* "true" when the operator keeps ApprovalInboxes: inboxes.enabled, where auto means unless
watchNamespace is set (inboxes need rights outside that namespace). */}}
{{- define "hitl-operator.inboxes" -}}
{{- $enabled := toString .Values.inboxes.enabled -}}
{{- if or (eq $enabled "true") (and (eq $enabled "auto") (not .Values.watchNamespace)) -}}
true
{{- else -}}
false
{{- end -}}
{{- end }}
