"""Worker-side configuration: FWorkers, queue adapters, local launching."""
