"""LLMEngine: spec checks, the Deployment and Service renderers, the honest status, adapter
loading into running pods, and the reconciler that ties them to the controller core."""
