"""n8n workflows shipped with the stack (workflows/*.json) and how ops keeps them in step and deploys them."""
