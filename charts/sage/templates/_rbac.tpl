{{/*
The rules each component needs, exactly the API calls it makes; used by both the cluster-wide
(ClusterRole) and the namespaced (Role per namespace) installs. No wildcard anywhere.
*/}}

{{- define "sage.operator.rules" -}}
# LLMEngine / FinetuneJob: watched, annotated and finalized by kopf, status written through /status.
- apiGroups: ["sage.ai"]
  resources: ["llmengines", "finetunejobs"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["sage.ai"]
  resources: ["llmengines/status", "finetunejobs/status"]
  verbs: ["patch"]
# The children the operator renders (server-side apply is a patch).
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Pod status is read to tell why an engine is not ready (ImagePullBackOff, OOMKilled, ...).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# Phase transitions are reported as Events.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
# Model and adapter volumes are checked before they are mounted.
- apiGroups: [""]
  resources: ["persistentvolumeclaims", "configmaps"]
  verbs: ["get"]
{{- end }}

{{- define "sage.operator.crdRules" -}}
# kopf scans CRDs to find the resources it serves and to notice CRDs (re)installed later.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{- define "sage.gateway.rules" -}}
# Engines (served names, aliases, adapters, phase) and their Services' EndpointSlices (ready pod
# addresses): read-only, the gateway never writes to the API.
- apiGroups: ["sage.ai"]
  resources: ["llmengines"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch"]
{{- end }}
