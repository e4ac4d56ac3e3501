"""FinetuneJob: rendering the training Job, computing honest status, pausing preemptible engines."""
