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

{{/* The UI's Pods: a name of their own, so that the operator's Deployment, PodDisruptionBudget
and metrics Service (which select by name and instance) never count them. */}}
{{- define "hitl-operator.uiSelectorLabels" -}}
app.kubernetes.io/name: {{ include "hitl-operator.name" . }}-ui
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: ui
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
double-brace placeholders that Helm would try to expand. Arguments:
(list $ "files/crds/hitl.dev.yaml" (list "Kind" ...) "auto"): the kinds to leave out, and the
install mode: "auto" also leaves out each object that already exists in the cluster and is not
this release's (see hitl-operator.managedElsewhere), "true" renders them all.
*/}}
{{- define "hitl-operator.keptDocuments" -}}
{{- $root := index . 0 }}
{{- $path := index . 1 }}
{{- $skip := index . 2 }}
{{- $mode := toString (index . 3) }}
{{- /* The policies trust the ServiceAccounts of the operator's namespace, hitl-system in config/; this release's instead. */}}
{{- $operatorNamespace := $root.Values.admissionPolicies.operatorNamespace | default $root.Release.Namespace }}
{{- $file := replace "'system:serviceaccount:hitl-system:'" (printf "'system:serviceaccount:%s:'" $operatorNamespace) ($root.Files.Get $path) }}
{{- range $doc := regexSplit "(?m)^---[ \\t]*$" $file -1 }}
{{- $obj := fromYaml $doc }}
{{- if hasKey $obj "Error" }}
{{- fail (printf "%s: not YAML: %s" $path $obj.Error) }}
{{- end }}
{{- $elsewhere := and (eq $mode "auto") (eq (include "hitl-operator.managedElsewhere" (list $root $obj)) "true") }}
{{- if and $obj.kind (not (has $obj.kind $skip)) (not $elsewhere) }}
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
it watches chosen namespaces (inboxes need rights outside them). */}}
{{- define "hitl-operator.inboxes" -}}
{{- $enabled := toString .Values.inboxes.enabled -}}
{{- $everywhere := eq (include "hitl-operator.watchNamespaces" .) "[]" -}}
{{- if or (eq $enabled "true") (and (eq $enabled "auto") $everywhere) -}}
true
{{- else -}}
false
{{- end -}}
{{- end }}

{{/*
"true" when the cluster already holds this cluster-scoped object and it is not this release's:
applied with kubectl (`kubectl apply --server-side -f crds/ -f config/policy/`, as the README's
local cluster does), or owned by another release. Helm refuses to install over such an object
("exists and cannot be imported into the current release"), so with install: auto the chart
leaves it to whoever manages it. `helm template` cannot look, and renders everything.
Arguments: (list $ object).
*/}}
{{- define "hitl-operator.managedElsewhere" -}}
{{- $root := index . 0 }}
{{- $obj := index . 1 }}
{{- $found := lookup $obj.apiVersion $obj.kind "" $obj.metadata.name }}
{{- if $found }}
{{- $annotations := $found.metadata.annotations | default dict }}
{{- $release := index $annotations "meta.helm.sh/release-name" | default "" }}
{{- $namespace := index $annotations "meta.helm.sh/release-namespace" | default "" }}
{{- if or (ne $release $root.Release.Name) (ne $namespace $root.Release.Namespace) }}true{{ end }}
{{- end }}
{{- end }}

{{/* The watched namespaces: watchNamespaces and watchNamespace together, sorted, no repeats. */}}
{{- define "hitl-operator.watchNamespaces" -}}
{{- $all := .Values.watchNamespaces | default list }}
{{- if .Values.watchNamespace }}
{{- $all = append $all .Values.watchNamespace }}
{{- end }}
{{- toJson ($all | uniq | sortAlpha) }}
{{- end }}

{{/* The operator's image: repository@digest when a digest is given, else repository:tag. */}}
{{- define "hitl-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
The archive API's serving certificate, its key and its CA, as JSON {"ca", "crt", "key"}: read back
from their Secret when it exists, so an upgrade keeps them, else generated - once per render,
shared by every template that asks (the Secret, the APIService's caBundle, the Pods' checksum).
*/}}
{{- define "hitl-operator.archiveTLS" -}}
{{- if not (hasKey .Values.archive "_tls") }}
{{- $fullname := include "hitl-operator.fullname" . }}
{{- $service := printf "%s-archive" $fullname }}
{{- $kept := (lookup "v1" "Secret" .Release.Namespace (printf "%s-archive-tls" $fullname)).data | default dict }}
{{- $tls := dict "ca" (index $kept "ca.crt" | default "" | b64dec) "crt" (index $kept "tls.crt" | default "" | b64dec) "key" (index $kept "tls.key" | default "" | b64dec) }}
{{- if not (and $tls.ca $tls.crt $tls.key) }}
{{- $days := int .Values.archive.tls.validityDays }}
{{- $issuer := genCA (printf "%s-archive-ca" $fullname) $days }}
{{- $names := list $service (printf "%s.%s" $service .Release.Namespace) (printf "%s.%s.svc" $service .Release.Namespace) }}
{{- $cert := genSignedCert (printf "%s.%s.svc" $service .Release.Namespace) nil $names $days $issuer }}
{{- $tls = dict "ca" $issuer.Cert "crt" $cert.Cert "key" $cert.Key }}
{{- end }}
{{- $_ := set .Values.archive "_tls" $tls }}
{{- end }}
{{- toJson .Values.archive._tls }}
{{- end }}
