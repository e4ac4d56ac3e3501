{{/*
The rules each component needs: exactly the API calls its code makes (sage_operator and
sage_gateway, through sage_kube and kopf), used by both the cluster-wide (ClusterRole) and the
namespaced (a Role per namespace) installs. No wildcard anywhere.
*/}}

{{- define "sage.operator.rules" -}}
# Engines and fine-tune jobs are watched (kopf) and read; a FinetuneJob pauses an engine and adds
# its adapter to the engine's spec (patch). Status is written through the /status subresource.
- apiGroups: ["sage.ai"]
  resources: ["llmengines"]
  verbs: ["get", "list", "watch", "patch"]
# The autoscaler sets replicas through the scale subresource.
- apiGroups: ["sage.ai"]
  resources: ["llmengines/scale"]
  verbs: ["patch"]
- apiGroups: ["sage.ai"]
  resources: ["finetunejobs"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["sage.ai"]
  resources: ["llmengines/status"]
  verbs: ["patch"]
# get as well: the operator grants the training pod get+patch on its own FinetuneJob's status, and
# Kubernetes lets it grant only what it holds.
- apiGroups: ["sage.ai"]
  resources: ["finetunejobs/status"]
  verbs: ["get", "patch"]
# The children it renders: created (create; get when one of that name exists already, to tell
# whether it is its own: it never takes over another's), kept with server-side apply (patch) and
# watched (list + watch, selected by the owner's label). Owner references let the garbage
# collector delete them: no delete verb.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Each engine's adapter-route credential: created, never read or patched (either would read
# every Secret of the namespace; operator/sage_operator/engine/credentials.py).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch"]
# The training pod's own ServiceAccount, Role and RoleBinding (status of its FinetuneJob only),
# watched like every child so that a steady state costs no writes.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Pod status tells why an engine is not ready (ImagePullBackOff, CrashLoopBackOff, OOMKilled, ...).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# One Event per phase transition.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* Cluster-scoped reads kopf makes: CRDs always; namespaces when it watches a list of them. */}}
{{- define "sage.operator.clusterRules" -}}
# kopf scans CRDs to find the resources it serves and to notice CRDs (re)installed later.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- if include "sage.watchNamespaces" . | fromJsonArray }}
# Watching a list of namespaces, kopf follows their creation and deletion.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- end }}
{{- end }}

{{- define "sage.gateway.rules" -}}
# Engines (served names, aliases, adapters, phase) and their Services' EndpointSlices (ready pod
# addresses): read-only. Its one write: one replica for an engine at zero that a held request
# waits for (scale from zero), through the scale subresource and nothing else.
- apiGroups: ["sage.ai"]
  resources: ["llmengines"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["sage.ai"]
  resources: ["llmengines/scale"]
  verbs: ["get", "patch"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch"]
{{- end }}
