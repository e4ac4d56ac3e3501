"""The SAGE operator: reconciles LLMEngine resources into engine Deployments and Services.

Pure parts (no I/O): `engine_spec` (defaulting, validation), `render` (manifests), `status`
(observed state -> status). `kube_io` alone talks to the API server, `engine_client` to engine pods;
`reconciler` ties them together; `handlers` are the thin kopf layer.
"""
