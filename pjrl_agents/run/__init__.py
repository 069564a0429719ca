"""The run machinery: specs, the builder, devices and processes, the runner, checkpoints, sinks, evaluation."""
