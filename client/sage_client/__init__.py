"""The SAGE Python client: `UnifiedInferenceClient.create()` finds SAGE on this machine (or where
SAGE_CHAT_BASE_URL / SAGE_EMBEDDING_BASE_URL say) and speaks OpenAI to it; it never falls back to
a hosted API.

    from sage_client import UnifiedInferenceClient

    with UnifiedInferenceClient.create() as client:
        print(client.chat([{"role": "user", "content": "Hello"}]).choices[0].message.content)
        print(len(client.embed("a sentence")[0]))
"""

from sage_client.client import UnifiedInferenceClient
from sage_client.endpoints import EndpointNotFound

__all__ = ["EndpointNotFound", "UnifiedInferenceClient"]
