{{/* Chart name, possibly overridden. */}}
{{- define "ringcache.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified name of the operator's objects. */}}
{{- define "ringcache.fullname" -}}
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

{{- define "ringcache.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every chart object. name/instance/managed-by follow DESIGN.md's scheme; the chart's
objects are managed by Helm (objects the operator creates say managed-by=ringcache-operator).
*/}}
{{- define "ringcache.labels" -}}
helm.sh/chart: {{ include "ringcache.chart" . }}
app.kubernetes.io/name: {{ include "ringcache.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ringcache
{{- end }}

{{/*
Selector of the operator pods. component=operator keeps it apart from cache-node pods, whose
selector is name=ringcache + instance=<CacheCluster name> + component=node.
*/}}
{{- define "ringcache.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "ringcache.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "ringcache.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ringcache.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ringcache.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Leader election is on when asked for, and always with more than one replica. */}}
{{- define "ringcache.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/* The namespace watched in namespaced mode. */}}
{{- define "ringcache.watchNamespace" -}}
{{- default .Release.Namespace .Values.rbac.watchNamespace }}
{{- end }}

{{/* Namespace of the Grafana dashboard ConfigMap (where the Grafana sidecar looks). */}}
{{- define "ringcache.dashboardNamespace" -}}
{{- default .Release.Namespace .Values.monitoring.grafanaDashboard.namespace }}
{{- end }}
