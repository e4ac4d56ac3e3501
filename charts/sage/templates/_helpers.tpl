{{/* Names, labels and small shared pieces of the SAGE chart. */}}

{{- define "sage.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>", or the release name when it already contains the chart name. */}}
{{- define "sage.fullname" -}}
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

{{- define "sage.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The standard labels on every object. */}}
{{- define "sage.labels" -}}
helm.sh/chart: {{ include "sage.chart" . }}
app.kubernetes.io/name: {{ include "sage.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sage
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "gateway"). */}}
{{- define "sage.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sage.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Standard labels plus the component: (dict "root" $ "component" "gateway"). */}}
{{- define "sage.componentLabels" -}}
{{ include "sage.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "sage.operator.fullname" -}}
{{- printf "%s-operator" (include "sage.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sage.operator.leaderLease" -}}
{{- printf "%s-leader" (include "sage.operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sage.gateway.fullname" -}}
{{- printf "%s-gateway" (include "sage.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sage.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "sage.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sage.gateway.serviceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create }}
{{- default (include "sage.gateway.fullname" .) .Values.gateway.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.gateway.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* "repository:tag", the tag defaulting to the chart's appVersion: (dict "root" $ "image" .Values.gateway.image). */}}
{{- define "sage.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}

{{/* The namespaces watched, as a list: watchNamespaces, else the release namespace when namespaced, else empty (all). */}}
{{- define "sage.watchNamespaces" -}}
{{- if .Values.watchNamespaces }}
{{- toJson .Values.watchNamespaces }}
{{- else if .Values.rbac.namespaced }}
{{- toJson (list .Release.Namespace) }}
{{- else }}
{{- toJson (list) }}
{{- end }}
{{- end }}

{{/* Whether the cluster serves the Prometheus Operator's ServiceMonitor. */}}
{{- define "sage.hasServiceMonitor" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor" }}true{{ end }}
{{- end }}

{{/* The gateway's auth mode: gateway.auth.mode, else apiKeys whenever the Ingress is enabled. */}}
{{/* Gateway worker processes: gateway.workers, else one per whole CPU of the container's CPU
limit (its request when it has no limit), at least one. */}}
{{- define "sage.gateway.workers" -}}
{{- $gw := .Values.gateway -}}
{{- if $gw.workers -}}
{{- $gw.workers -}}
{{- else -}}
{{- $resources := $gw.resources | default dict -}}
{{- $cpu := dig "limits" "cpu" (dig "requests" "cpu" "" $resources) $resources | toString -}}
{{- $cores := 1 -}}
{{- if hasSuffix "m" $cpu -}}
{{- $cores = div (atoi (trimSuffix "m" $cpu)) 1000 -}}
{{- else if $cpu -}}
{{- $cores = int (floor (float64 $cpu)) -}}
{{- end -}}
{{- max 1 $cores -}}
{{- end -}}
{{- end }}

{{- define "sage.gateway.authMode" -}}
{{- $mode := .Values.gateway.auth.mode -}}
{{- if not $mode -}}
{{- $mode = ternary "apiKeys" "none" .Values.gateway.ingress.enabled -}}
{{- end -}}
{{- $mode -}}
{{- end }}

{{/* The NetworkPolicyPeers that alone reach engine pods (JSON): this release's gateway and
operator pods, and networkPolicy.extraFrom. */}}
{{- define "sage.enginePeers" -}}
{{- $peers := list -}}
{{- range $component := list "gateway" "operator" -}}
{{- $labels := include "sage.selectorLabels" (dict "root" $ "component" $component) | fromYaml -}}
{{- $namespace := dict "matchLabels" (dict "kubernetes.io/metadata.name" $.Release.Namespace) -}}
{{- $peers = append $peers (dict "namespaceSelector" $namespace "podSelector" (dict "matchLabels" $labels)) -}}
{{- end -}}
{{- toJson (concat $peers (.Values.networkPolicy.extraFrom | default list)) -}}
{{- end }}

{{/* The Secret holding the operator's admin key: operator.adminKeySecret, else the chart's own. */}}
{{- define "sage.adminKeySecret" -}}
{{- .Values.operator.adminKeySecret | default (printf "%s-operator-admin-key" (include "sage.fullname" .)) -}}
{{- end }}
