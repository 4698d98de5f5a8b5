"""AWS adapters shared by the pipelines: EventBridge publishing, Secrets Manager, client config, retries."""
